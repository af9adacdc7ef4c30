"""Growth recipes: up-front validation with clear errors, `hf-efftrain grow`, the saved recipe and model card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import ModelCard
from transformers import AutoModelForCausalLM

from hf_efftrain.cli import main
from hf_efftrain.growth import GrowthError, fusion_gap
from hf_efftrain.growth.grow import apply_recipe, grow_from_recipe
from hf_efftrain.growth.hub import push_grown_model
from hf_efftrain.growth.lag import LagResult
from hf_efftrain.growth.recipe import RECIPE_FILE, GrowthRecipe, validate_recipe
from hf_efftrain.testing import tiny_inputs, tiny_model


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    tiny_model("llama", "causal-lm", seed=0).save_pretrained(root / "a")
    tiny_model("llama", "causal-lm", seed=1).save_pretrained(root / "b")
    tiny_model("llama", "causal-lm", seed=2, vocab_size=100).save_pretrained(root / "vocab100")
    tiny_model("llama", "causal-lm", seed=3, hidden_size=32).save_pretrained(root / "wide")
    tiny_model("bert", "masked-lm").save_pretrained(root / "bert")
    return root


def _recipe(*sources, steps, **extra) -> GrowthRecipe:
    return GrowthRecipe.from_dict({"sources": [str(s) for s in sources], "steps": steps, **extra})


BAD = [
    ({"depth": {"strategy": "slices", "slices": [[0, 0, 5]]}}, ["a"], "layer 2 of source 0 does not exist"),
    ({"depth": {"strategy": "slices", "slices": [[0, 0, 2], [1, 0, 2]]}}, ["a", "wide"], "equal width"),
    ({"depth": {"strategy": "slices", "slices": [[0, 0, 2], [1, 0, 2]]}}, ["a", "vocab100"], "vocabulary mismatch"),
    ({"depth": {"strategy": "slices", "slices": [[0, 0, 2], [1, 0, 2]]}}, ["a", "bert"], "source 1 is bert"),
    ({"depth": {"strategy": "stack"}}, ["a"], "unknown depth strategy 'stack'"),
    ({"depth": {"strategy": "top_k", "target_layers": 4}}, ["a"], r"needs \['k'\]"),
    ({"width": {"hidden": 32}}, ["a"], r"unknown parameter\(s\) \['hidden'\]"),
    ({"width": {"hidden_size": 8}}, ["a"], "cannot shrink"),
    ({"width": {"hidden_size": 32, "num_heads": 4}}, ["bert"], "needs 8.0 heads"),
    ({"fusion": {}}, ["a", "wide"], "same shape"),
    ({"grow": {}}, ["a"], "unknown step 'grow'"),
    ({"depth": {"strategy": "copy_all", "target_layers": 4}}, ["a", "b"], "uses one"),
    ({"masked_width": {"intermediate_size": 64}}, ["missing"], "not a model folder"),
]


@pytest.mark.parametrize(("step", "names", "message"), BAD)
def test_bad_recipes_fail_before_loading_weights(sources, step, names, message):
    with pytest.raises(GrowthError, match=message):
        validate_recipe(_recipe(*(sources / n for n in names), steps=[step]))


def test_different_tokenizer_files_are_rejected(sources, tmp_path):
    for name, words in (("t1", "[PAD]\nhello\n"), ("t2", "[PAD]\nworld\n")):
        tiny_model("llama", "causal-lm").save_pretrained(tmp_path / name)
        (tmp_path / name / "vocab.txt").write_text(words)
    step = {"depth": {"strategy": "slices", "slices": [[0, 0, 2], [1, 0, 2]]}}
    with pytest.raises(GrowthError, match="tokenizer mismatch"):
        validate_recipe(_recipe(tmp_path / "t1", tmp_path / "t2", steps=[step]))


def test_masked_step_must_be_last_and_task_must_be_known(sources):
    steps = [{"masked_depth": {"strategy": "copy_all", "target_layers": 4}}, {"width": {}}]
    with pytest.raises(GrowthError, match="must be the last step"):
        validate_recipe(_recipe(sources / "a", steps=steps))
    with pytest.raises(GrowthError, match="task must be one of"):
        validate_recipe(_recipe(sources / "a", steps=[{"width": {}}], task="seq2seq"))


def test_multi_step_recipe_grows_and_is_saved_next_to_the_model(sources, tmp_path):
    steps = [{"depth": {"strategy": "copy_all", "target_layers": 4}}, {"width": {"intermediate_size": 64}}]
    recipe = _recipe(sources / "a", steps=steps, task="causal-lm")
    assert validate_recipe(recipe) == {"layers": 4, "hidden_size": 16, "num_heads": 4, "ffn": 64}
    out = grow_from_recipe(recipe, tmp_path / "grown")
    saved = yaml.safe_load((out / RECIPE_FILE).read_text())
    assert saved["steps"] == steps
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.num_hidden_layers == 4 and model.config.intermediate_size == 64
    assert len(model.model.layers) == 4


def test_fusion_recipe_in_json_gives_the_average_for_identical_sources(sources, tmp_path):
    path = tmp_path / "fuse.json"
    path.write_text(json.dumps({"sources": [str(sources / "a")] * 2, "steps": [{"fusion": {}}], "task": "causal-lm"}))
    fused = apply_recipe(GrowthRecipe.load(path))
    source = AutoModelForCausalLM.from_pretrained(sources / "a")
    assert fusion_gap(fused, [source, source], tiny_inputs(source)) < 1e-5


def test_cli_grow_and_its_user_errors(sources, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"sources": ["../sources/a"], "steps": [{"depth": {"strategy": "interleave"}}]}))
    with pytest.raises(SystemExit) as exit_info:
        main(["grow", str(recipe), str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("hf-efftrain: error:") and len(err.strip().splitlines()) == 1
    recipe.write_text(
        yaml.safe_dump(
            {"sources": [str(sources / "a")], "steps": [{"depth": {"strategy": "interleave", "target_layers": 3}}]}
        )
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["grow", str(recipe), str(tmp_path / "out")])
    assert exit_info.value.code == 0
    assert (tmp_path / "out" / RECIPE_FILE).is_file() and (tmp_path / "out" / "README.md").is_file()


class _FakeApi:
    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, folder_path, repo_id, **kwargs):
        self.calls.append(("upload_folder", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))


def test_push_uploads_weights_recipe_and_a_valid_card(sources, tmp_path):
    recipe = _recipe(sources / "a", steps=[{"depth": {"strategy": "copy_all", "target_layers": 4}}], task="causal-lm")
    recipe.notes = {"base_models": ["org/tiny-llama"]}
    folder = grow_from_recipe(recipe, tmp_path / "grown")
    lag = LagResult(2, [1, 2], "held-out loss", {"copy_all": {0: 4.0, 1: 3.9, 2: 3.8}}, {"copy_all": [4.0, 3.9]},
                    ["copy_all"])  # fmt: skip
    api = _FakeApi()
    push_grown_model(folder, "me/grown", lag_result=lag, api=api)
    assert api.calls[0][:2] == ("create_repo", "me/grown")
    uploaded = api.calls[1][2]
    assert {"README.md", RECIPE_FILE, "config.json", "model.safetensors"} <= set(uploaded)
    card = ModelCard.load(folder / "README.md")
    assert card.data.base_model == ["org/tiny-llama"]
    assert set(card.data.tags) == {"hf_efftrain", "model-growth"}
    assert "strategy: copy_all" in card.text and "| 1 | copy_all | 4.0 | 3.9 | 3.8 |" in card.text


def test_grown_state_dict_loads_strictly_after_save(sources, tmp_path):
    model = apply_recipe(_recipe(sources / "a", steps=[{"width": {"num_heads": 8}}], task="causal-lm"))
    model.save_pretrained(tmp_path / "m")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    for name, tensor in model.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor)
