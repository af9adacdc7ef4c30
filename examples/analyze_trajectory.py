"""Analyze the trajectory any run saved: CMD modes of its checkpoints, and its transfer onto a new initialization.

Point it at a run's ``--output_dir`` (its ``snapshots/`` from ``--snapshot_every``, or Trainer's
``checkpoint-N/`` folders) or at any folder of ``snapshot-N``/``checkpoint-N``. It writes, next to the run:

* ``cmd_posthoc/``: the correlation modes (``cmd.json`` + tensors, reloadable with ``CMDResult.load``) and plots;
* ``transfer/``: the trajectory moved onto ``--target_init`` by gradient matching (FGMT), a loadable model
  folder per saved point and ``transfer_report.json`` (accuracy of the init and of the transferred point).

Without ``--target_init`` the target is the run's first checkpoint with its task head re-drawn from
``--target_seed`` (the paper's fine-tuning case: the same pretrained body, another head), or with
``--target_reinit all`` the architecture re-initialized from scratch. With several
processes the two analyses run side by side (CMD on the first, transfer on the second)::

    python examples/finetune.py --snapshot_every 10 --max_steps 100 --output_dir outputs/finetune
    python examples/analyze_trajectory.py --run_dir outputs/finetune
    torchrun --standalone --nproc_per_node 2 examples/analyze_trajectory.py \\
        --run_dir outputs/finetune --modes 3 --transfer_steps 5
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers
from transformers import AutoConfig, PreTrainedModel

from hf_efftrain.cmd import fit_cmd
from hf_efftrain.cmd.plots import plot_all
from hf_efftrain.entrypoint import parse_arguments, run_main
from hf_efftrain.errors import ArgumentsError
from hf_efftrain.outputs import check_output, output_directory
from hf_efftrain.trajectory import Trajectory
from hf_efftrain.transfer import TransferConfig
from hf_efftrain.transfer.tool import run_transfer


@dataclass
class AnalysisArguments:
    run_dir: str = field(
        metadata={"help": "A run's output_dir, its snapshots/ folder, or any checkpoint-N folder set."}
    )
    base_model: str | None = field(
        default=None, metadata={"help": "Folder with the run's config and tokenizer (default: run_dir)."}
    )
    output_dir: str | None = field(default=None, metadata={"help": "Where results go (default: run_dir)."})
    analyses: list[str] = field(default_factory=lambda: ["cmd", "transfer"], metadata={"help": "cmd and/or transfer."})
    modes: int = field(default=5, metadata={"help": "CMD: number of correlation modes."})
    candidates: int = field(default=1000, metadata={"help": "CMD: sampled parameters the modes are chosen from."})
    target_init: str | None = field(
        default=None, metadata={"help": "Transfer: save_pretrained folder of the new initialization."}
    )
    target_seed: int = field(default=1, metadata={"help": "Transfer: seed of the re-drawn head or weights."})
    target_reinit: str = field(
        default="head",
        metadata={
            "help": "Transfer, without --target_init: re-draw the task head of the run's first checkpoint ('head', "
            "a target sharing the run's pretrained body) or every weight of the architecture ('all')."
        },
    )
    transfer_method: str = field(default="fgmt", metadata={"help": "Transfer: fgmt, gmt or naive."})
    transfer_steps: int = field(default=20, metadata={"help": "Transfer: transferred points T."})
    transfer_batch_size: int = field(default=32, metadata={"help": "Transfer: examples per gradient mini-batch."})
    dataset: str = field(default="rotten_tomatoes", metadata={"help": "Transfer: data the gradients are taken on."})
    max_length: int = field(default=64, metadata={"help": "Transfer: tokens per example."})
    eval_samples: int = field(default=500, metadata={"help": "Transfer: validation examples scored per point."})
    seed: int = field(default=0, metadata={"help": "Seed of CMD's sampling and of the transfer's batches."})
    disable_tqdm: bool = field(default=False, metadata={"help": "No progress bars (the Trainer's flag name)."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace earlier cmd_posthoc/ and transfer/ results in the output folder."}
    )


def trajectory_folder(run_dir: Path) -> Path:
    """The run's ``snapshots/`` when it has one, else the folder itself (``checkpoint-N``/``snapshot-N``)."""
    if not run_dir.is_dir():
        raise ArgumentsError(f"--run_dir {run_dir} is not a folder")
    return run_dir / "snapshots" if (run_dir / "snapshots").is_dir() else run_dir


def base_folder(script: AnalysisArguments) -> Path:
    folder = Path(script.base_model or script.run_dir)
    if not (folder / "config.json").is_file():
        raise ArgumentsError(f"{folder} has no config.json: pass --base_model, the folder the run saved its model to")
    return folder


def run_cmd(script: AnalysisArguments, traj: Trajectory, out: Path) -> dict:
    inputs = [trajectory_folder(Path(script.run_dir)), base_folder(script)]
    folder = check_output(
        out / "cmd_posthoc", "cmd fit", inputs, script.overwrite_output_dir, flag="--overwrite_output_dir"
    )
    result = fit_cmd(traj, modes=script.modes, candidates=script.candidates, seed=script.seed,
                     base_model=str(base_folder(script)))  # fmt: skip
    with output_directory(folder, "cmd fit") as tmp:
        result.save(tmp)
        plot_all(result, tmp / "plots")
    stats = {k: v for k, v in result.stats.items() if isinstance(v, int | float)}
    return {"cmd_modes": result.num_modes, **{f"cmd_{k}": v for k, v in stats.items()}}


def transfer_target(script: AnalysisArguments, traj: Trajectory) -> tuple[Path | PreTrainedModel, Path, str]:
    """The target, its tokenizer's folder and how the report names it: ``--target_init``, or a target built in
    memory from ``--target_seed`` (never written: a run folder keeps no copy of an input, and the seed
    reproduces it) — the run's first checkpoint with its task head re-drawn, or the whole architecture."""
    if script.target_init:
        return Path(script.target_init), Path(script.target_init), script.target_init
    base = base_folder(script)
    config = AutoConfig.from_pretrained(base)
    model_class = getattr(transformers, (config.architectures or [""])[0], None)
    if model_class is None:
        raise ArgumentsError(f"{base}/config.json names no transformers model class; pass --target_init")
    torch.manual_seed(script.target_seed)
    model = model_class(config)
    if script.target_reinit == "all":
        return model, base, f"{base} re-initialized with --target_seed {script.target_seed}"
    model.load_state_dict(traj.load(0), strict=False)  # the run's start (a trajectory may hold a subset)
    head = redraw_head(model, script.target_seed)
    label = (
        f"the run's first checkpoint with its head ({', '.join(head)}) re-drawn with --target_seed {script.target_seed}"
    )
    return model, base, label


def redraw_head(model: PreTrainedModel, seed: int) -> list[str]:
    """Re-initialize, from ``seed``, every module outside the model's base (its task head); return their names."""
    prefix = model.base_model_prefix
    shared = {id(p) for p in getattr(model, prefix, model).parameters()}  # a tied LM head belongs to the base
    head = [
        (name, module)
        for name, module in model.named_modules()
        if name.split(".")[0] not in ("", prefix)
        and (own := list(module.parameters(recurse=False)))
        and not any(id(p) in shared for p in own)
    ]
    if not head:
        raise ArgumentsError(
            f"{type(model).__name__} has no task head outside its base model to re-draw; pass --target_init, or "
            "--target_reinit all"
        )
    torch.manual_seed(seed)
    for _, module in head:
        model._init_weights(module)
    return [name for name, _ in head]


def run_transfer_analysis(script: AnalysisArguments, traj: Trajectory, out: Path) -> dict:
    config = TransferConfig(method=script.transfer_method, steps=script.transfer_steps,
                            batch_size=script.transfer_batch_size, seed=script.seed)  # fmt: skip
    source = trajectory_folder(Path(script.run_dir))
    target, tokenizer_path, label = transfer_target(script, traj)
    report = run_transfer(source, target, out / "transfer", config, script.dataset, script.max_length,
                          script.eval_samples, progress=not script.disable_tqdm,
                          overwrite=script.overwrite_output_dir, overwrite_flag="--overwrite_output_dir",
                          tokenizer_path=tokenizer_path, target_label=label)  # fmt: skip
    init, last = report["points"][0], report["points"][-1]
    return {**{f"transfer_init_{k}": v for k, v in init.items()}, **{f"transfer_final_{k}": v for k, v in last.items()}}


def main(argv: list[str] | None = None) -> dict:
    (script,) = parse_arguments((AnalysisArguments,), {}, argv)
    unknown = set(script.analyses) - {"cmd", "transfer"}
    if unknown or not script.analyses:
        raise ArgumentsError(f"--analyses takes cmd and/or transfer, got {script.analyses}")
    if script.target_reinit not in ("head", "all"):
        raise ArgumentsError(f"--target_reinit takes head or all, got {script.target_reinit!r}")
    out = Path(script.output_dir or script.run_dir)
    traj = Trajectory(trajectory_folder(Path(script.run_dir)))  # validates every checkpoint up front
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    mine = [name for i, name in enumerate(script.analyses) if i % world == rank]
    summary: dict = {"checkpoints": len(traj), "steps": traj.steps}
    if "cmd" in mine:
        summary.update(run_cmd(script, traj, out))
    if "transfer" in mine:
        summary.update(run_transfer_analysis(script, traj, out))
    if mine:
        print(json.dumps(summary, indent=2, default=str))
    return summary


if __name__ == "__main__":
    run_main(main, prog="analyze_trajectory.py")
