"""Publishing a grown model through huggingface_hub and Trainer.push_to_hub (mocked: no network), and its pooler."""

from __future__ import annotations

import fnmatch
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from datasets import Dataset
from huggingface_hub import ModelCard
from transformers import AutoModel, AutoModelForMaskedLM

from hf_efftrain.cli import main
from hf_efftrain.growth import copy_all, grow_depth, grow_width
from hf_efftrain.growth.grow import apply_recipe, grow_from_recipe
from hf_efftrain.growth.hub import push_grown_model
from hf_efftrain.growth.lag_report import LagResult
from hf_efftrain.growth.recipe import RECIPE_FILE, GrowthRecipe
from hf_efftrain.outputs import MANIFEST_FILE
from hf_efftrain.testing import tiny_inputs, tiny_model
from hf_efftrain.trainer import EfficientTrainer, EfficientTrainingArguments

LAG = LagResult(2, [1, 2], "held-out loss", {"copy_all": {0: 4.0, 1: 3.9, 2: 3.8}}, {"copy_all": [4.0, 3.9]},
                ["copy_all"])  # fmt: skip
LAG_ROW = "| 1 | copy_all | 4.0 | 3.9 | 3.8 |"
EXPECTED_FILES = {"README.md", RECIPE_FILE, "config.json", "model.safetensors", "lag/lag_report.json"}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A BertModel checkpoint with its pooler (as MiniLM) and a masked-LM depth recipe for it."""
    root = tmp_path_factory.mktemp("hub")
    tiny_model("bert", "base").save_pretrained(root / "src")
    steps = [{"depth": {"strategy": "copy_all", "target_layers": 4}}]
    (root / "stack.yaml").write_text(yaml.safe_dump({"sources": ["src"], "task": "masked-lm", "steps": steps}))
    return root


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


class _FakeHfApi:
    """Records create_repo/upload_folder calls and what the folder held at upload time."""

    calls: list = []

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, folder_path, repo_id, **kwargs):
        folder = Path(folder_path)
        ignored = kwargs.get("ignore_patterns") or []
        files = {f for f in _files(folder) if not any(fnmatch.fnmatch(f, pattern) for pattern in ignored)}
        card = (folder / "README.md").read_text()
        self.calls.append(("upload_folder", repo_id, {"folder": folder, "files": files, "card": card, **kwargs}))
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/0")


@pytest.fixture
def hub(monkeypatch) -> list:
    from hf_efftrain.growth import hub as hub_module

    calls: list = []
    monkeypatch.setattr(_FakeHfApi, "calls", calls)
    monkeypatch.setattr(hub_module, "HfApi", _FakeHfApi)
    return calls


def _check_card(text: str) -> ModelCard:
    card = ModelCard(text)
    metadata = yaml.safe_load(text.split("---\n")[1])  # the front matter is plain, parseable YAML
    assert metadata == card.data.to_dict()
    assert set(card.data.tags) == {"hf_efftrain", "model-growth"} and card.data.pipeline_tag == "fill-mask"
    assert card.data.library_name == "transformers"
    assert LAG_ROW in card.text and "strategy: copy_all" in card.text
    return card


def test_push_grown_model_uploads_the_folder_with_card_recipe_and_lag_report(root, tmp_path, hub):
    folder = grow_from_recipe(root / "stack.yaml", tmp_path / "grown")
    assert (folder / MANIFEST_FILE).is_file()
    url = push_grown_model(folder, "me/grown", lag_result=LAG, token="hf_x")
    assert url == "https://huggingface.co/me/grown/commit/0"
    assert hub[0] == ("create_repo", "me/grown", {"private": False, "exist_ok": True, "repo_type": "model"})
    (_, repo, upload) = hub[1]
    assert repo == "me/grown" and upload["folder"] == folder and upload["repo_type"] == "model"
    assert upload["files"] >= EXPECTED_FILES and MANIFEST_FILE not in upload["files"]
    _check_card(upload["card"])
    assert upload["card"] == (folder / "README.md").read_text()


def test_cli_grow_push_to_hub_uploads_the_same_card(root, tmp_path, hub):
    LAG.save(tmp_path / "lag_report")
    argv = ["grow", str(root / "stack.yaml"), str(tmp_path / "grown"), "--push-to-hub", "me/grown"]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--lag-report", str(tmp_path / "lag_report")])
    assert exit_info.value.code in (0, None)
    upload = hub[1][2]
    assert upload["files"] >= EXPECTED_FILES
    _check_card(upload["card"])


def _blocks(rows: int) -> Dataset:
    ids = torch.randint(5, 96, (rows, 12), generator=torch.Generator().manual_seed(rows))
    labels = torch.full_like(ids, -100)
    labels[:, ::3] = ids[:, ::3]
    return Dataset.from_dict({"input_ids": ids.tolist(), "labels": labels.tolist()})


def _args(out: Path, **extra) -> EfficientTrainingArguments:
    return EfficientTrainingArguments(
        output_dir=str(out), max_steps=2, per_device_train_batch_size=4, learning_rate=1e-3, use_cpu=True,
        report_to=[], disable_tqdm=True, save_strategy="no", logging_steps=1, **extra,
    )  # fmt: skip


def test_trainer_push_to_hub_of_a_grown_model_sends_the_growth_card(root, tmp_path, monkeypatch):
    import transformers.trainer

    api = _FakeHfApi()
    monkeypatch.setattr(_FakeHfApi, "calls", [])
    monkeypatch.setattr(transformers.trainer, "hf_api", lambda: api)
    grown = grow_from_recipe(root / "stack.yaml", tmp_path / "grown", lag_result=LAG)
    trainer = EfficientTrainer(
        AutoModelForMaskedLM.from_pretrained(grown), _args(tmp_path / "run", hub_model_id="me/grown-trained"),
        train_dataset=_blocks(16),
    )  # fmt: skip
    trainer.train()
    trainer.push_to_hub()
    (_, repo, upload) = api.calls[-1]
    assert repo == "me/grown-trained" and upload["folder"] == Path(tmp_path / "run")
    assert upload["files"] >= EXPECTED_FILES
    card = _check_card(upload["card"])
    assert "Trained for 2 optimizer steps after growth" in card.text
    # the recipe copied into the run folder points at the source from there
    assert GrowthRecipe.load(tmp_path / "run" / RECIPE_FILE).sources == [str((root / "src").resolve())]
    # reloading with the masked-LM class dropped the pooler (unexpected key): the card says so
    assert "pooler (`pooler.dense`) is not in these weights" in card.text


def test_a_model_that_was_not_grown_keeps_the_trainer_card(tmp_path):
    trainer = EfficientTrainer(tiny_model("bert", "masked-lm"), _args(tmp_path), train_dataset=_blocks(8))
    trainer.create_model_card(model_name="plain")
    text = (tmp_path / "README.md").read_text()
    assert "model-growth" not in text and "Growth recipe" not in text and "plain" in text


def test_depth_and_width_growth_keep_the_pooler_of_a_bert_encoder():
    source = tiny_model("bert", "base")
    batch = tiny_inputs(source)
    deeper = grow_depth([source], copy_all(2, 4))
    assert torch.equal(deeper.pooler.dense.weight, source.pooler.dense.weight)
    wider = grow_width(source, hidden_size=32, intermediate_size=64)
    with torch.no_grad():  # the first 16 units are the originals: the pooled output is the source's, extended
        pooled = wider.eval()(**batch).pooler_output
        assert torch.allclose(pooled[:, :16], source.eval()(**batch).pooler_output, atol=1e-5)


@pytest.mark.parametrize(
    ("step", "width"),
    [({"depth": {"strategy": "copy_all", "target_layers": 4}}, 16), ({"width": {"hidden_size": 32}}, 32)],
)
def test_masked_lm_growth_of_an_encoder_keeps_its_pooler_frozen(root, tmp_path, step, width):
    recipe = GrowthRecipe([str(root / "src")], [step], task="masked-lm")
    model = apply_recipe(recipe)
    assert type(model).__name__ == "BertForMaskedLM" and not model.bert.pooler.dense.weight.requires_grad
    before = model.bert.pooler.dense.weight.clone()
    trainer = EfficientTrainer(model, _args(tmp_path / "run"), train_dataset=_blocks(8))
    trainer.train()
    assert torch.equal(model.bert.pooler.dense.weight, before)  # the masked-LM loss never reads it

    out = grow_from_recipe(recipe, tmp_path / "grown", card=True)
    encoder = AutoModel.from_pretrained(out).eval()  # the pooler comes back, not a random new one
    reference = apply_recipe(GrowthRecipe([str(root / "src")], [step], task="base")).eval()  # grown BertModel
    batch = tiny_inputs(encoder)
    with torch.no_grad():
        pooled = encoder(**batch).pooler_output
        assert torch.allclose(pooled, reference(**batch).pooler_output, atol=1e-6) and pooled.shape[-1] == width
    assert "pooler (`pooler.dense`) is kept in these weights" in (out / "README.md").read_text()
