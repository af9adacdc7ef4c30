"""Every example under ``accelerate launch`` with the shipped configs (1 process, and 2 gloo processes on CPU).

The runs are tiny (a 2-layer BERT with MiniLM's tokenizer, a few steps) but real: the same scripts and the
same configs a user launches. Each case checks what the run must leave behind, and the 2-process runs check
that the processes really formed one group (TWA reports world size 2) with an unscaled loss.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from hf_efftrain import EfficientTrainingArguments
from hf_efftrain.data import minilm_path
from hf_efftrain.testing import tiny_model
from hf_efftrain.trajectory import Trajectory
from tests._examples_support import PROCESSES, ROOT, launch, load_example, printed_json

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    """A 2-layer BERT classifier with MiniLM's tokenizer, saved like a Hub checkpoint."""
    folder = tmp_path_factory.mktemp("tiny_base")
    tiny_model("bert", task="classification", vocab_size=30522).save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(folder)
    return folder


def finetune_argv(base: Path, out: Path) -> list[str]:
    return [
        "--model_name_or_path", str(base), "--output_dir", str(out), "--max_steps", "6",
        "--per_device_train_batch_size", "4", "--max_length", "16", "--max_train_samples", "64",
        "--max_eval_samples", "16", "--logging_steps", "1", "--disable_tqdm", "true", "--learning_rate", "1e-3",
    ]  # fmt: skip


MAT_TWA = ["--mat", "true", "--mat_every", "2", "--mat_warmup_steps", "2", "--mat_probe_size", "4"]
MAT_TWA += ["--twa", "true", "--twa_start", "0.5", "--twa_every", "1", "--twa_steps", "2", "--snapshot_every", "2"]
MAT_TWA += ["--fix_loss_scaling", "true"]


@pytest.mark.parametrize("config", ["single", "two"])
def test_finetune_with_mat_and_twa(config, tiny_base, tmp_path):
    done = launch(config, "finetune.py", finetune_argv(tiny_base, tmp_path) + MAT_TWA)
    (metrics,) = printed_json(done.stdout)  # the main process reports, once
    assert metrics["twa_world_size"] == PROCESSES[config] and metrics["twa_checkpoints"] == 3
    for noise in ("pin_memory", "LOAD REPORT", "torch.distributed.launch", "Map:"):  # not the user's concern
        assert noise not in done.stderr, noise
    assert 0 <= metrics["eval_accuracy"] <= 1 and metrics["mat_measurements"] >= 1
    first_loss = float(re.search(r"'loss': '([0-9.]+)'", done.stdout).group(1))
    assert first_loss < 1.0  # ln 2 ≈ 0.69 for two classes; without --fix_loss_scaling 1.39 with 2 processes
    for name in ("model.safetensors", "tokenizer.json", "mat_history.json", "mat_heatmap.png"):
        assert (tmp_path / name).is_file(), name
    snapshots = sorted(p.name for p in (tmp_path / "snapshots").iterdir())
    assert snapshots == ["snapshot-0", "snapshot-2", "snapshot-4", "snapshot-5"]  # every 2 steps, and the last


@pytest.fixture(scope="module")
def finished_run(tiny_base, tmp_path_factory) -> Path:
    """A MAT + TWA fine-tuning run (in-process) whose snapshots the analysis reads."""
    out = tmp_path_factory.mktemp("run")
    argv = finetune_argv(tiny_base, out) + MAT_TWA
    load_example("finetune").main(argv)
    return out


@pytest.mark.parametrize("config", ["single", "two"])
def test_analyze_trajectory_reads_the_run_snapshots(config, finished_run, tmp_path):
    argv = ["--run_dir", str(finished_run), "--output_dir", str(tmp_path), "--modes", "2", "--candidates", "200"]
    argv += ["--transfer_steps", "2", "--transfer_batch_size", "4", "--max_length", "16", "--eval_samples", "16"]
    done = launch(config, "analyze_trajectory.py", argv + ["--disable_tqdm", "true"])
    reports = printed_json(done.stdout)
    assert len(reports) == PROCESSES[config]  # with 2 processes CMD and transfer ran side by side
    merged = {k: v for report in reports for k, v in report.items()}
    steps = Trajectory(finished_run / "snapshots").steps
    assert len(steps) >= 3 and merged["steps"] == steps and merged["checkpoints"] == len(steps)
    assert merged["cmd_modes"] in (1, 2) and merged["transfer_final_step"] == 2
    assert (tmp_path / "cmd_posthoc" / "cmd.json").is_file()
    assert len(list((tmp_path / "cmd_posthoc" / "plots").glob("*.png"))) == 4
    report = json.loads((tmp_path / "transfer" / "transfer_report.json").read_text())
    assert report["points"][-1]["accuracy"] == pytest.approx(merged["transfer_final_accuracy"])
    assert (tmp_path / "transfer" / "checkpoint-2" / "model.safetensors").is_file()
    assert not (tmp_path / "target-init").exists()  # the target is built in memory
    assert "first checkpoint with its head (classifier) re-drawn with --target_seed 1" in report["target"]
    assert report["prior"]["related"] and report["prior"]["at"] == "identity"  # the run's own body: related


@pytest.mark.parametrize(
    ("family", "task", "head"), [("bert", "classification", "classifier"), ("llama", "classification", "score")]
)
def test_redraw_head_changes_the_task_head_only_and_refuses_a_model_without_one(family, task, head):
    from hf_efftrain.errors import ArgumentsError
    from hf_efftrain.testing import tiny_model

    analyze = load_example("analyze_trajectory")
    model = tiny_model(family, task=task)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert analyze.redraw_head(model, seed=1) == [head]
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(n.startswith(head + ".") for n in changed)
    with pytest.raises(ArgumentsError, match="no task head outside its base model"):
        analyze.redraw_head(tiny_model(family), seed=1)


def test_finetune_with_online_and_embedded_cmd(tiny_base, tmp_path):
    argv = finetune_argv(tiny_base, tmp_path) + ["--cmd_online", "true", "--cmd_every", "1", "--cmd_warmup", "3"]
    argv += ["--cmd_modes", "2", "--cmd_candidates", "100", "--cmd_embed_every", "1"]
    metrics = load_example("finetune").main(argv)
    assert 0 <= metrics["eval_accuracy"] <= 1 and 0 <= metrics["eval_cmd_accuracy"] <= 1
    assert metrics["cmd_embedded_fraction"] > 0 and metrics["cmd_snapshots"] == 6
    assert (tmp_path / "cmd_model" / "model.safetensors").is_file()


@pytest.mark.parametrize(
    ("script", "argv", "message"),
    [
        ("finetune.py", ["--mat", "true", "--mat_every", "0"], "mat_every"),
        ("finetune.py", ["--load_best_model_at_end", "true", "--save_strategy", "steps"], "load_best_model_at_end"),
        ("analyze_trajectory.py", ["--run_dir", "/nonexistent/run"], "/nonexistent/run"),
        ("analyze_trajectory.py", ["--run_dir", ".", "--analyses", "pca"], "--analyses"),
        ("analyze_trajectory.py", ["--run_dir", ".", "--target_reinit", "body"], "--target_reinit takes head or all"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(script, argv, message, tmp_path):
    command = [sys.executable, str(ROOT / "examples" / script), *argv]
    if script == "finetune.py":
        command += ["--output_dir", str(tmp_path)]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{script}: error:") and message in last


def test_grow_example_takes_the_trainers_hub_flags_over(tmp_path):
    module = load_example("grow_and_pretrain")
    _, args = module.parse_arguments(
        (module.GrowArguments, EfficientTrainingArguments), module.DEFAULTS,
        ["--output_dir", str(tmp_path / "grown"), "--push_to_hub", "true", "--hub_model_id", "me/minilm-12l"],
    )  # fmt: skip
    assert module.hub_repo(args) == "me/minilm-12l" and not args.push_to_hub  # pushed once, by the example
    args.push_to_hub, args.hub_model_id = True, None
    assert module.hub_repo(args) == "grown"  # the Trainer's default: the output folder's name
