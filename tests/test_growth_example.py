"""Smoke test of examples/grow_and_pretrain.py on a tiny BERT that shares MiniLM's tokenizer."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

from hf_efftrain.data import minilm_path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "grow_and_pretrain.py"


@pytest.mark.slow
def test_grow_and_pretrain_runs_and_saves_model_recipe_lag_and_card(tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)  # fmt: skip
    BertForMaskedLM(config).save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    spec = importlib.util.spec_from_file_location("grow_and_pretrain", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    out = tmp_path / "out"
    metrics = module.main([
        "--source", str(tmp_path / "tiny"), "--target_layers", "4", "--strategies", "copy_all", "interleave",
        "--lag_steps", "2", "--max_steps", "3", "--block_size", "16", "--eval_blocks", "4",
        "--max_train_articles", "20", "--per_device_train_batch_size", "2", "--output_dir", str(out),
        "--use_cpu", "true", "--disable_tqdm", "true",
    ])  # fmt: skip
    assert metrics["lag_pick"] in ("copy_all", "interleave")
    assert metrics["eval_loss"] > 0
    for name in ("config.json", "model.safetensors", "growth_recipe.yaml", "README.md", "lag/lag_report.json"):
        assert (out / name).is_file(), name
    assert "model-growth" in (out / "README.md").read_text()
