"""examples/finetune_causal_lm.py on a tiny Llama and a local text dataset: LoRA, LoRA + TWA, LoRA + MAT, full."""

from __future__ import annotations

import json
import random

import pytest
import torch
from _examples_support import load_example

from hf_efftrain.errors import MATConfigError
from hf_efftrain.testing import tiny_model, tiny_tokenizer

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def local_assets(tmp_path_factory):
    """A saved tiny Llama with its tokenizer, and a dataset folder of train/validation text files."""
    root = tmp_path_factory.mktemp("assets")
    tiny_model("llama", task="causal-lm", hidden_size=32).save_pretrained(root / "model")
    tiny_tokenizer().save_pretrained(root / "model")
    rng = random.Random(0)
    (root / "data").mkdir()
    for split, lines in (("train", 40), ("validation", 10)):
        text = "\n".join(" ".join(f"t{rng.randrange(3, 96):02d}" for _ in range(20)) for _ in range(lines))
        (root / "data" / f"{split}.txt").write_text(text + "\n")
    return root


def run_example(assets, out, *flags: str) -> dict:
    example = load_example("finetune_causal_lm")
    argv = ["--model_name_or_path", str(assets / "model"), "--dataset_name", str(assets / "data")]
    argv += ["--block_size", "16", "--max_steps", "4", "--output_dir", str(out), "--disable_tqdm", "true"]
    argv += ["--use_cpu", "true", "--lora_r", "2", *flags]
    return example.main(argv)


def test_lora_with_twa_saves_the_adapter_and_reports_perplexity(local_assets, tmp_path, one_thread):
    metrics = run_example(local_assets, tmp_path, "--twa", "true", "--twa_start", "0.5", "--twa_every", "1")
    assert metrics["twa_checkpoints"] == 2 and metrics["eval_perplexity"] == pytest.approx(
        torch.tensor(metrics["eval_loss"]).exp().item(), rel=1e-6
    )
    assert (tmp_path / "adapter_config.json").is_file() and not (tmp_path / "model.safetensors").exists()


def test_full_fine_tuning_saves_the_whole_model(local_assets, tmp_path, one_thread):
    metrics = run_example(local_assets, tmp_path, "--lora", "false", "--learning_rate", "1e-3")
    assert (tmp_path / "model.safetensors").is_file() and not (tmp_path / "adapter_config.json").exists()
    assert metrics["eval_loss"] > 0


def test_mat_on_a_lora_model_gates_the_adapter(local_assets, tmp_path, one_thread):
    run_example(local_assets, tmp_path, "--mat", "true", "--mat_every", "1", "--mat_warmup_steps", "1")
    history = json.loads((tmp_path / "mat_history.json").read_text())
    assert history["units"][0] == "L0.H0" and len(history["history"]) >= 2


def test_mat_on_a_lora_model_without_attention_adapters_is_refused_before_training(local_assets, tmp_path):
    with pytest.raises(MATConfigError, match="nothing to train"):
        run_example(local_assets, tmp_path, "--mat", "true", "--lora_target_modules", "gate_proj,up_proj,down_proj")
    assert not list(tmp_path.glob("checkpoint-*")) and not (tmp_path / "trainer_state.json").exists()


def test_twa_over_the_adapter_defaults_to_the_tuned_setting_and_flags_override_it():
    """The script's TWA starts at the last adapter with the learning rate chosen on SmolLM2's tuning blocks."""
    from hf_efftrain.causal_lm import parse_causal_lm_args

    _, args = parse_causal_lm_args({}, ["--output_dir", "out", "--twa", "true"])
    assert (args.twa_lr, args.twa_init) == (4.0, "last") and args.twa_config().init == "last"
    _, args = parse_causal_lm_args({}, ["--output_dir", "out", "--twa", "true", "--twa_lr", "0.5"])
    assert args.twa_lr == 0.5
