"""The growth study's independent jobs: pre-train a base, train one candidate (or scratch) for one seed, or run
one gradual-stacking arm. Each job runs in its own single-threaded worker and writes one JSON record.

Why jobs: the protocol is ~35 runs that depend at most on the base(s), so two workers (one per core) finish it in
half the time, and a crash loses only the job it hit: a rerun skips every job whose record exists. Each job's
Trainer output goes to ``work/logs/<job>.log``. Example::

    record = run_job(Study(), Job("candidate", "copy_all", seed=0), work)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import LlamaForCausalLM, TrainerCallback, default_data_collator

from benchmarks.growth_setup import (
    BUILDERS,
    TWO_BASES,
    Study,
    fresh_model,
    llama_config,
    load_data,
    train_flops_per_token,
)
from hf_efftrain.atomic import write_json
from hf_efftrain.growth.lag import select_growth
from hf_efftrain.growth.stacking import PlateauStopCallback, StackingConfig, gradual_stack
from hf_efftrain.trainer import EfficientTrainer, EfficientTrainingArguments


@dataclass(frozen=True)
class Job:
    """One unit of work: ``kind`` is base, candidate, scratch, scratch_long or gradual; ``name`` the
    base/candidate/arm (for scratch_long: its number of steps)."""

    kind: str
    name: str
    seed: int

    @property
    def key(self) -> str:
        """File-safe id (names the record and the log)."""
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in self.name)
        return f"{self.kind}-{safe}-s{self.seed}"

    def needs(self) -> tuple[str, ...]:
        """Keys of the base jobs that must finish first."""
        if self.kind != "candidate":
            return ()
        letters = ("a", "b") if self.name in TWO_BASES else ("a",)
        return tuple(Job("base", letter, BASE_SEEDS[letter]).key for letter in letters)


BASE_SEEDS = {"a": 0, "b": 1}
GRADUAL_ARMS = ("fixed", "adaptive")


def plan_jobs(study: Study) -> list[Job]:
    """Every job of the protocol (bases first)."""
    jobs = [Job("base", "a", BASE_SEEDS["a"])]
    if study.needs_second_base():
        jobs.append(Job("base", "b", BASE_SEEDS["b"]))
    jobs += [Job("candidate", name, seed) for name in study.names() for seed in study.seeds]
    jobs += [Job("scratch", "scratch", seed) for seed in study.seeds]
    jobs += [Job("gradual", arm, seed) for arm in GRADUAL_ARMS for seed in study.gradual_seeds]
    return jobs


def record_path(work: Path, job: Job) -> Path:
    """Where the job's record lives once it has finished."""
    return work / "records" / f"{job.key}.json"


def run_job(study: Study, job: Job, work: Path) -> str:
    """Run ``job`` single-threaded with its output in its log; write its record; return its key."""
    torch.set_num_threads(1)
    runner = {
        "base": run_base,
        "candidate": run_candidate,
        "scratch": run_scratch,
        "scratch_long": run_scratch_long,
        "gradual": run_gradual,
    }[job.kind]
    with _logged(work / "logs" / f"{job.key}.log"):
        cpu, wall = time.process_time(), time.perf_counter()
        record = runner(study, job, work)
        record.update(job=job.key, cpu_seconds=time.process_time() - cpu, wall_seconds=time.perf_counter() - wall)
    write_json(record_path(work, job), record)
    return job.key


@contextlib.contextmanager
def _logged(path: Path) -> Iterator[None]:
    """Send this process's stdout/stderr (Trainer logs, warnings) to ``path`` for the duration."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush(), sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "a", encoding="utf-8") as log:
        os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


def training_args(study: Study, seed: int, output_dir: Path, **extra) -> EfficientTrainingArguments:
    """One recipe for every run: AdamW, cosine schedule with warmup, the study's batch and learning rate."""
    settings = {
        "per_device_train_batch_size": study.batch,
        "per_device_eval_batch_size": 64,
        "learning_rate": study.lr,
        "lr_scheduler_type": "cosine",
        "warmup_steps": study.warmup,
        "weight_decay": 0.01,
        "seed": seed,
        "disable_tqdm": True,
        "use_cpu": True,
        "dataloader_num_workers": 0,
        "report_to": [],
        "save_strategy": "no",
        "logging_steps": 1,
        **extra,
    }
    return EfficientTrainingArguments(output_dir=str(output_dir), **settings)


def study_trainer(model, args, work: Path, callbacks: list | None = None) -> EfficientTrainer:
    """A Trainer on the study's training blocks and fixed held-out blocks."""
    train, held = load_data(work)
    return EfficientTrainer(
        model=model, args=args, train_dataset=train, eval_dataset=held, data_collator=default_data_collator,
        callbacks=callbacks or [],
    )  # fmt: skip


# ---- the base ---------------------------------------------------------------------------------------------------


class _HeldOut(TrainerCallback):
    """Held-out loss by step (the Trainer's periodic evaluations)."""

    def __init__(self) -> None:
        self.losses: dict[int, float] = {}

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics and "eval_loss" in metrics:
            self.losses[state.global_step] = float(metrics["eval_loss"])


def run_base(study: Study, job: Job, work: Path) -> dict:
    """Pre-train a ``base_layers`` model from scratch until its training loss flattens (or the step cap)."""
    model = fresh_model(study, study.base_layers, job.seed)
    plateau = PlateauStopCallback(study.base_plateau_window, study.base_plateau_tolerance, study.base_min_steps)
    held_out = _HeldOut()
    args = training_args(
        study,
        job.seed,
        work / "runs" / job.key,
        max_steps=study.base_max_steps,
        eval_strategy="steps",
        eval_steps=study.base_eval_every,
    )
    trainer = study_trainer(model, args, work, [plateau, held_out])
    trainer.train()
    steps = trainer.state.global_step
    if steps not in held_out.losses:
        trainer.evaluate()
    _save_model(model, base_folder(work, job.name))
    return {
        "steps": steps,
        "stopped_by_plateau": plateau.stopped_at is not None,
        "heldout_curve": held_out.losses,
        "train_losses": plateau.losses,
        "flops": steps * study.batch * study.block * train_flops_per_token(model),
        "params": model.num_parameters(),
        "layers": study.base_layers,
    }


def base_folder(work: Path, letter: str) -> Path:
    """Folder of the pre-trained base ``letter``."""
    return work / f"base-{letter}"


def _save_model(model, folder: Path) -> None:
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


# ---- candidates and scratch -------------------------------------------------------------------------------------


def train_run(
    study: Study, model, seed: int, steps: int, evals: list[int], work: Path, key: str, warmup: float | None = None
) -> dict:
    """Train ``model`` ``steps`` steps (data order from ``seed``), held-out loss at step 0 and at ``evals``;
    ``warmup`` (steps, or a fraction below 1) replaces the study's."""
    train, held = load_data(work)
    flops = train_flops_per_token(model) * study.batch * study.block
    args = training_args(study, seed, work / "runs" / key, **({} if warmup is None else {"warmup_steps": warmup}))
    result = select_growth(
        {key: model},
        train,
        lag_steps=steps,
        args=args,
        eval_dataset=held,
        data_collator=default_data_collator,
        lags=evals,
        schedule_steps=steps,
    )
    losses = result.losses[key]
    return {"losses": losses, "train_losses": result.train_curves[key], "flops_per_step": flops, "steps": steps}


def run_candidate(study: Study, job: Job, work: Path) -> dict:
    """Grow the base(s) with one operator and train the result for the study's run."""
    letters = ("a", "b") if job.name in TWO_BASES else ("a",)
    bases = {x: LlamaForCausalLM.from_pretrained(str(base_folder(work, x))) for x in letters}
    model = BUILDERS[job.name](study, bases, job.seed)
    warmup = study.warmup_after_growth
    record = train_run(study, model, job.seed, study.steps, study.eval_steps(), work, job.key, warmup)
    return {**record, "params": model.num_parameters(), "layers": model.config.num_hidden_layers}


def run_scratch(study: Study, job: Job, work: Path) -> dict:
    """A randomly initialized model of the grown (deep) shape, trained exactly like the candidates."""
    return _train_scratch(study, job, work, study.steps, study.eval_steps())


def run_scratch_long(study: Study, job: Job, work: Path) -> dict:
    """Scratch of the grown shape trained ``int(job.name)`` steps with its own schedule (as long as a base plus the
    run after growth), held-out loss every ``eval_every`` steps."""
    steps = int(job.name)
    return _train_scratch(
        study, job, work, steps, sorted({*range(study.eval_every, steps + 1, study.eval_every), steps})
    )


def _train_scratch(study: Study, job: Job, work: Path, steps: int, evals: list[int]) -> dict:
    model = fresh_model(study, study.target_layers, job.seed)
    record = train_run(study, model, job.seed, steps, evals, work, job.key)
    return {**record, "params": model.num_parameters(), "layers": model.config.num_hidden_layers}


# ---- gradual stacking --------------------------------------------------------------------------------------------


def stacking_config(study: Study, arm: str) -> StackingConfig:
    """Fixed: every stage the same length, top-k stacking (Reddi et al.). Adaptive: a stage ends when the training
    loss flattens (capped at the fixed length) and LAG picks the stacking among four at every growth."""
    stages = (study.target_layers - study.gradual_start) // study.gradual_grow_by + 1
    common = {
        "final_layers": study.target_layers,
        "grow_by": study.gradual_grow_by,
        "stage_steps": study.steps // stages,
    }
    k = study.gradual_grow_by
    if arm == "fixed":
        return StackingConfig(**common, candidates=[{"strategy": "top_k", "k": k}])
    candidates = [{"strategy": "copy_all"}, {"strategy": "interleave"}, {"strategy": "top_k", "k": k}]
    candidates.append({"strategy": "middle", "block": k})
    window = max(2, study.steps // 40)
    return StackingConfig(
        **common,
        trigger="plateau",
        plateau_window=window,
        plateau_tolerance=0.01,
        min_stage_steps=2 * window,
        candidates=candidates,
        lag_steps=study.gradual_lag,
    )


def run_gradual(study: Study, job: Job, work: Path) -> dict:
    """Grow from ``gradual_start`` layers to the target by stages, then train on to the run's step budget."""
    if (study.target_layers - study.gradual_start) % study.gradual_grow_by:
        raise SystemExit("gradual stacking: target_layers - gradual_start must be a multiple of gradual_grow_by")
    train, held = load_data(work)
    config = stacking_config(study, job.name)
    args = training_args(study, job.seed, work / "runs" / job.key)
    start = fresh_model(study, study.gradual_start, job.seed)
    batches = BatchCounter(study.batch)
    model, history = gradual_stack(start, train, args, config, eval_dataset=held, data_collator=batches)
    used = sum(stage["steps"] for stage in history)
    rest = study.steps - used
    # the tail is one more stage at full depth; it gets a data order of its own (seed + stage index)
    tail_seed = job.seed + len(history)
    tail = train_run(study, model, tail_seed, rest, [rest], work, job.key + "-tail") if rest > 0 else None
    final = tail["losses"][rest] if tail else _evaluate(study, model, work, job.key)
    return {
        "stages": [_stage_summary(stage) for stage in history],
        "main_line_steps": used,
        "tail_steps": max(rest, 0),
        "heldout_after_stacking": tail["losses"][0] if tail else final,
        "final_heldout_loss": final,
        "flops": _gradual_flops(study, history, rest),
        "config": asdict(config),
        "stage_batches_drawn": len(batches.seen),
        "stage_batches_distinct": len(set(batches.seen)),
    }


class BatchCounter:
    """``default_data_collator`` that fingerprints every training batch it builds (size ``batch``), to measure
    how much of the data the stages of gradual stacking really saw (distinct batches / batches drawn)."""

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.seen: list[int] = []

    def __call__(self, features: list[dict]) -> dict:
        if len(features) == self.batch:
            self.seen.append(hash(tuple(tuple(f["input_ids"][:16]) for f in features)))
        return default_data_collator(features)


def _stage_summary(stage: dict) -> dict:
    lag = stage.get("lag") or {}
    return {
        "layers": stage["layers"],
        "steps": stage["steps"],
        "growth": stage["growth"],
        "lag_metric": lag.get("metric"),
        "lag_losses": lag.get("losses"),
        "lag_steps": lag.get("lag_steps"),
        "train_losses": stage["train_losses"],
    }


def _gradual_flops(study: Study, history: list[dict], rest: int) -> dict:
    """Training FLOPs of the main line (every stage at its depth, then the tail) and of the LAG probes."""
    tokens = study.batch * study.block
    per_token = {d: flops_per_token_at(study, d) for d in range(1, study.target_layers + 1)}
    main = sum(s["steps"] * tokens * per_token[s["layers"]] for s in history)
    main += max(rest, 0) * tokens * per_token[study.target_layers]
    probes = 0.0
    for stage in history:
        lag = stage.get("lag") or {}
        grown = min(stage["layers"] + study.gradual_grow_by, study.target_layers)
        probes += len(lag.get("losses", {})) * lag.get("lag_steps", 0) * tokens * per_token[grown]
    return {"main_line": main, "lag_probes": probes}


def flops_per_token_at(study: Study, layers: int) -> float:
    """Training FLOPs per token of the study's shape at ``layers`` layers."""
    with torch.device("meta"):
        return train_flops_per_token(LlamaForCausalLM(llama_config(study, layers)))


def _evaluate(study: Study, model, work: Path, key: str) -> float:
    args = training_args(study, 0, work / "runs" / (key + "-eval"))
    return float(study_trainer(model, args, work).evaluate()["eval_loss"])


def read_records(work: Path, jobs: list[Job]) -> dict[str, dict]:
    """The records of the finished jobs among ``jobs``, by job key."""
    found = {}
    for job in jobs:
        path = record_path(work, job)
        if path.is_file():
            found[job.key] = json.loads(path.read_text())
    return found
