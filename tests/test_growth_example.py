"""examples/grow_and_pretrain.py on a tiny BERT sharing MiniLM's tokenizer: in-process and under accelerate launch."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

from hf_efftrain.data import minilm_path
from tests._examples_support import launch, load_example

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "grow_and_pretrain.py"


def _argv(source: Path, out: Path) -> list[str]:
    return [
        "--source", str(source), "--target_layers", "4", "--strategies", "copy_all", "interleave",
        "--lag_steps", "2", "--max_steps", "3", "--block_size", "16", "--eval_blocks", "4",
        "--max_train_articles", "20", "--per_device_train_batch_size", "2", "--output_dir", str(out),
        "--use_cpu", "true", "--disable_tqdm", "true",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    """The example run in-process once: (tiny source folder, output folder, returned metrics)."""
    root = tmp_path_factory.mktemp("grow_example")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)  # fmt: skip
    BertForMaskedLM(config).save_pretrained(root / "tiny")
    tokenizer.save_pretrained(root / "tiny")
    spec = importlib.util.spec_from_file_location("grow_and_pretrain", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    metrics = module.main(_argv(root / "tiny", root / "out"))
    return root / "tiny", root / "out", metrics


@pytest.mark.slow
def test_grow_and_pretrain_saves_model_recipe_lag_and_card(single_run):
    _, out, metrics = single_run
    assert metrics["lag_pick"] in ("copy_all", "interleave")
    assert metrics["eval_loss"] > 0
    for name in ("config.json", "model.safetensors", "growth_recipe.yaml", "README.md", "lag/lag_report.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 4
    card = (out / "README.md").read_text()
    assert "model-growth" in card
    assert "Trained for 3 optimizer steps after growth" in card  # from the trainer_state.json saved with it
    for published in (card, (out / "growth_recipe.yaml").read_text(), (out / "lag" / "lag_report.json").read_text()):
        assert str(out.parent) not in published  # sources relative to the grown folder, no local absolute path


@pytest.mark.slow
@pytest.mark.parametrize("config", ["single", "two"])
def test_grow_and_pretrain_under_accelerate_scores_like_in_process(config, single_run, tmp_path):
    source, single_out, _ = single_run
    out = tmp_path / "launched"
    launch(config, "grow_and_pretrain.py", _argv(source, out))
    launched = json.loads((out / "lag" / "lag_report.json").read_text())["losses"]
    one = json.loads((single_out / "lag" / "lag_report.json").read_text())["losses"]
    for name in ("copy_all", "interleave"):  # same weights and held-out set at step 0, whatever the process count
        assert launched[name]["0"] == pytest.approx(one[name]["0"], abs=1e-4)


@pytest.mark.slow
def test_grown_model_fine_tunes_with_mat(single_run, tmp_path):
    _, grown, _ = single_run
    argv = ["--model_name_or_path", str(grown), "--output_dir", str(tmp_path), "--max_steps", "4", "--mat", "true"]
    argv += ["--mat_every", "2", "--mat_warmup_steps", "2", "--mat_probe_size", "4", "--max_length", "16"]
    argv += ["--per_device_train_batch_size", "4", "--max_train_samples", "32", "--max_eval_samples", "16"]
    metrics = load_example("finetune").main(argv + ["--disable_tqdm", "true", "--use_cpu", "true"])
    history = json.loads((tmp_path / "mat_history.json").read_text())
    assert len(history["units"]) == 4 * 2  # every head of the 4 grown layers is a MAT unit
    assert len(history["history"]) == 2 and 0 < metrics["mat_active_fraction"] <= 1
