"""Smoke test: the CMD example runs end to end (online, embedded, post-hoc) with a tiny BERT and MiniLM's tokenizer."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from hf_efftrain.data import minilm_path
from hf_efftrain.testing import tiny_model

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "cmd_finetune.py"


@pytest.mark.slow
def test_example_reports_last_and_cmd_accuracy_and_writes_all_outputs(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("cmd_finetune", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    base = tmp_path / "tiny"
    tiny_model("bert", task="classification", vocab_size=30522).save_pretrained(base)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(base)
    argv = ["--model_name_or_path", str(base), "--output_dir", str(tmp_path / "out"), "--max_steps", "4"]
    argv += ["--per_device_train_batch_size", "4"]
    argv += ["--max_length", "16", "--max_eval_samples", "16", "--use_cpu", "true", "--cmd_every", "1"]
    argv += ["--cmd_warmup", "3", "--cmd_modes", "2", "--cmd_candidates", "100", "--cmd_embed_every", "1"]
    argv += ["--snapshot_every", "2", "--disable_tqdm", "true"]
    metrics = module.main(argv)
    assert 0 <= metrics["eval_accuracy"] <= 1 and 0 <= metrics["eval_cmd_accuracy"] <= 1
    assert metrics["cmd_embedded_fraction"] > 0 and metrics["cmd_snapshots"] == 4
    assert (tmp_path / "out" / "cmd_model" / "model.safetensors").is_file()
    assert (tmp_path / "out" / "cmd_posthoc" / "cmd.json").is_file()
    assert len(list((tmp_path / "out" / "cmd_posthoc" / "plots").glob("*.png"))) == 4
