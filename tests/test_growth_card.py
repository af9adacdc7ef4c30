"""The model card of a grown model: the real origin of packaged weights, portable recipes, training after growth."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from datasets import Dataset
from huggingface_hub import ModelCard

from hf_efftrain.data import MINILM_HUB_ID, asset_hub_id, minilm_path
from hf_efftrain.growth.grow import grow_from_recipe
from hf_efftrain.growth.hub import NOT_RECORDED, model_card, write_model_card
from hf_efftrain.growth.provenance import TrainingRecord, base_models
from hf_efftrain.growth.recipe import RECIPE_FILE, GrowthRecipe
from hf_efftrain.testing import tiny_model
from hf_efftrain.trainer import EfficientTrainer, EfficientTrainingArguments


def _card_recipe(card: ModelCard) -> dict:
    """The YAML block under "## Growth recipe"."""
    block = card.text.split("## Growth recipe", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    return yaml.safe_load(block)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("card_sources") / "tiny"
    tiny_model("llama", "causal-lm").save_pretrained(folder)
    return folder


def _grown(source: Path, root: Path) -> Path:
    recipe = root / "recipes" / "stack.yaml"
    recipe.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, root / "src" / "tiny")
    steps = [{"depth": {"strategy": "copy_all", "target_layers": 4}}]
    recipe.write_text(yaml.safe_dump({"sources": ["../src/tiny"], "task": "causal-lm", "steps": steps}))
    return grow_from_recipe(recipe, root / "out" / "grown", card=True)


def test_the_packaged_minilm_is_named_by_the_hub_repo_its_weights_came_from(tmp_path):
    folder = tmp_path / "grown"
    folder.mkdir()
    shutil.copy(minilm_path() / "config.json", folder / "config.json")  # says nreimers/MiniLM-L6-H384-uncased
    recipe = GrowthRecipe([str(minilm_path())], [{"depth": {"strategy": "copy_all", "target_layers": 12}}])
    (folder / RECIPE_FILE).write_text(recipe.to_yaml())  # an absolute path, as older versions wrote it
    card = model_card(folder)
    assert asset_hub_id(minilm_path()) == MINILM_HUB_ID == "sentence-transformers/all-MiniLM-L6-v2"
    assert card.data.base_model == [MINILM_HUB_ID]
    assert "nreimers" not in str(card) and str(minilm_path()) not in str(card)
    assert _card_recipe(card)["sources"] == [MINILM_HUB_ID]
    # a recipe naming the Hub id grows offline from the packaged folder
    (tmp_path / "minilm.yaml").write_text(yaml.safe_dump({"sources": [MINILM_HUB_ID], "steps": recipe.steps}))
    assert GrowthRecipe.load(tmp_path / "minilm.yaml").sources == [str(minilm_path())]


def test_an_old_config_name_is_still_a_base_model_and_a_local_path_is_not(tmp_path):
    tiny_model("llama", "causal-lm").save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert base_models(GrowthRecipe([str(tmp_path / "m")], [])) == []
    (tmp_path / "m" / "config.json").write_text(json.dumps({**config, "_name_or_path": "org/tiny-llama"}))
    assert base_models(GrowthRecipe([str(tmp_path / "m")], [])) == ["org/tiny-llama"]
    assert asset_hub_id(tmp_path / "m") is None


def test_saved_recipe_and_card_hold_no_absolute_path_and_still_reproduce(source, tmp_path):
    out = _grown(source, tmp_path)
    saved = yaml.safe_load((out / RECIPE_FILE).read_text())
    assert saved["sources"] == ["../../src/tiny"]  # relative to the grown folder, not to the recipe file
    text = (out / "README.md").read_text()
    assert str(tmp_path) not in text and str(tmp_path) not in (out / RECIPE_FILE).read_text()
    assert _card_recipe(ModelCard.load(out / "README.md"))["sources"] == saved["sources"]
    reloaded = GrowthRecipe.load(out / RECIPE_FILE)  # the saved recipe finds its source again
    assert reloaded.sources == [str((tmp_path / "src" / "tiny").resolve())]
    again = grow_from_recipe(out / RECIPE_FILE, tmp_path / "again")
    for name in ("config.json", "model.safetensors"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name


def _blocks(rows: int) -> Dataset:
    ids = torch.randint(1, 96, (rows, 12), generator=torch.Generator().manual_seed(rows))
    return Dataset.from_dict({"input_ids": ids.tolist(), "labels": ids.tolist()})


def test_the_card_states_the_training_after_growth(source, tmp_path):
    out = _grown(source, tmp_path)
    assert NOT_RECORDED in (out / "README.md").read_text()  # just grown: nothing recorded, and the card says so
    from transformers import AutoModelForCausalLM

    args = EfficientTrainingArguments(
        output_dir=str(out), max_steps=3, per_device_train_batch_size=4, learning_rate=1e-3, use_cpu=True,
        report_to=[], disable_tqdm=True, save_strategy="no", logging_steps=1, eval_strategy="steps", eval_steps=3,
    )  # fmt: skip
    trainer = EfficientTrainer(AutoModelForCausalLM.from_pretrained(out), args, train_dataset=_blocks(24),
                               eval_dataset=_blocks(8))  # fmt: skip
    trainer.train()
    eval_loss = trainer.evaluate()["eval_loss"]
    trainer.save_model(str(out))
    trainer.save_state()
    text = write_model_card(out).read_text()
    assert NOT_RECORDED not in text and "not trained" not in text.lower()
    assert "Trained for 3 optimizer steps after growth" in text
    assert f"evaluation loss {eval_loss:.4f}" in text
    assert TrainingRecord.from_state(trainer.state) == TrainingRecord.load(out)
    assert str(model_card(out, training=trainer.state)) == text
    assert TrainingRecord(steps=0).to_markdown().startswith("Not trained after growth")
