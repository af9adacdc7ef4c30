"""CMD benchmark: MiniLM fine-tuned on Rotten Tomatoes (shared recipe); post-hoc, online and embedded CMD.

Per seed, one process trains twice with the same seed and data order:
  run A: plain fine-tune, a snapshot every ``--every`` steps, EMAs of several decays riding along;
  run B: embedded CMD with the online settings chosen below.
Online CMD and SWA are replayed from run A's snapshots (the online update is the same ``OnlineCMD`` code the
callback runs, so the replay is the online method, with every variant fed identical snapshots). Each method gets
the same tuning effort: its variants (online: warm-up, modes, forgetting; EMA: decay; SWA: start) are scored on the
validation split of the first seed, the best of each is then scored on the full test split for every seed.
Post-hoc CMD is fitted to the first seed's snapshots for M in {1, 2, 5, 10}, each fit in its own subprocess so its
peak RSS is its own; the naive N×T-matrix fit of the same data runs in another subprocess. Writes
``benchmarks/results/cmd.json`` and ``.md``::

    python -m benchmarks.cmd --seeds 0 1 2
    python -m benchmarks.cmd --seeds 0 --every 4 --posthoc-only     # only the post-hoc keys, into the same file
    python -m benchmarks.cmd --every 4 --embedded-only --embed-order input_first --embed-every 1 \
        --embed-fraction 0.2 --embed-max 0.34                        # only run B again, into the same file
    python -m benchmarks.cmd --every 4 --embedded-only --hold-embedded ...   # control: freeze the same tensors

``--embedded-only`` re-runs run B per seed with the online settings the full run chose, and compares it with the
full run's last weights of the same seed (training is deterministic: ``--check-last`` re-runs run A to show it).
Seeds may run in separate processes sharing ``--records``; the result is written once every seed has a record.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import TrainerCallback

import hf_efftrain.cmd.callback
from benchmarks.harness import RESULTS_DIR, run_facts, stopwatch, write_result
from benchmarks.sentiment import RECIPE, SentimentTask
from hf_efftrain import EfficientTrainer, EfficientTrainingArguments
from hf_efftrain.cmd import CMDCallback, CMDResult, OnlineCMD, fit_cmd
from hf_efftrain.cmd.embedded import Embedding, backward_flops
from hf_efftrain.cmd.fit import fit_block
from hf_efftrain.cmd.modes import cluster_modes, moving_columns
from hf_efftrain.cmd.sampling import sample_candidates
from hf_efftrain.trajectory import Trajectory

MODES = (1, 2, 5, 10)
TITLE = "CMD: post-hoc, online and embedded on MiniLM / Rotten Tomatoes"
RECORDS = Path(__file__).parent / ".work" / "cmd"  # per-seed records of the last run (gitignored)


# ---- workers (run in subprocesses so each peak RSS is measured alone) --------------------------------------
def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). Not ru_maxrss: Linux carries that over from the parent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_fit(trajectory: str, out: str, modes: int, candidates: int) -> dict:
    """Streaming post-hoc CMD (what `hf-efftrain cmd fit` does), result saved to ``out``."""
    with stopwatch() as clock:
        result = fit_cmd(Trajectory(trajectory), modes=modes, candidates=candidates, seed=0)
        result.save(out)
    return {"seconds": clock["seconds"], "peak_rss_mb": _peak_rss_mb(), **_errors(result.stats)}


def worker_naive(trajectory: str, modes: int, candidates: int) -> dict:
    """The reference implementation's approach: the whole N×T matrix in memory, then the same algorithm."""
    traj = Trajectory(trajectory)
    with stopwatch() as clock:
        sizes = {n: math.prod(s) for n, s in traj.shapes.items()}
        offsets = dict(zip(sizes, np.cumsum([0, *sizes.values()])[:-1].tolist(), strict=True))
        matrix = np.empty((len(traj), sum(sizes.values())), dtype=np.float32)
        for t in range(len(traj)):
            for name, value in traj.load(t).items():
                matrix[t, offsets[name] : offsets[name] + sizes[name]] = value.reshape(-1).float().numpy()
        picks = sample_candidates(traj.shapes, candidates, seed=0)
        columns = np.concatenate([offsets[n] + p for n, p in picks.items()])
        values = matrix[:, columns].astype(np.float64)
        values = values[:, moving_columns(values)]
        clusters = cluster_modes(values, modes)
        references = values[:, clusters.references].T.copy()
        error = norm = 0.0
        for start in range(0, matrix.shape[1], 2**16):
            block = matrix[:, start : start + 2**16].astype(np.float64)
            error += float(fit_block(block, references).squared_error.sum())
            norm += float((block**2).sum())
    return {
        "seconds": clock["seconds"],
        "peak_rss_mb": _peak_rss_mb(),
        "relative_reconstruction_error": (error / norm) ** 0.5,
    }


def _errors(stats: dict) -> dict:
    keys = ("relative_reconstruction_error", "relative_displacement_error")
    return {k: stats[k] for k in keys}


def run_worker(*args: str) -> dict:
    """Run this module as a subprocess worker and parse its last stdout line (JSON)."""
    command = [sys.executable, "-m", "benchmarks.cmd", "--worker", *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"worker {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- training ------------------------------------------------------------------------------------------------
class EMACallback(TrainerCallback):
    """Per-step EMAs of the trainable weights, one per decay, with the usual warm-up: min(decay, (1+n)/(10+n))."""

    def __init__(self, decays: list[float]) -> None:
        self.decays, self.count = list(decays), 0
        self.averages: dict[float, dict[str, torch.Tensor]] = {}

    @torch.no_grad()
    def on_step_end(self, args, state, control, model=None, **kwargs):
        params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
        for decay in self.decays:
            if decay not in self.averages:
                self.averages[decay] = {n: p.clone() for n, p in params.items()}
                continue
            rate = min(decay, (1 + self.count) / (10 + self.count))
            for name, value in params.items():
                self.averages[decay][name].mul_(rate).add_(value, alpha=1 - rate)
        self.count += 1


class StepClock(TrainerCallback):
    """Wall-clock seconds of each optimizer step (to compare step cost before/after embedding)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds.append(time.perf_counter() - self._start)

    def second_half_mean(self) -> float:
        """Mean seconds per step over the run's second half (after most embedding steps)."""
        return statistics.mean(self.seconds[len(self.seconds) // 2 :])


def train(task: SentimentTask, out: Path, opts, seed: int, callbacks: list, **cmd_args) -> tuple:
    """One fine-tune of the shared recipe; returns the model and ``EfficientTrainer``'s CMD callback (or None)."""
    model = task.model(seed)
    args = EfficientTrainingArguments(
        output_dir=str(out),
        max_steps=opts.steps,
        seed=seed,
        logging_steps=opts.steps,
        use_cpu=True,
        **{**RECIPE, "per_device_train_batch_size": opts.batch_size},
        **cmd_args,
    )
    trainer = EfficientTrainer(
        model=model, args=args, train_dataset=task.splits["train"], data_collator=task.collator, callbacks=callbacks
    )
    trainer.train()
    cmd = next((c for c in trainer.callback_handler.callbacks if isinstance(c, CMDCallback)), None)
    return model, cmd


def run_backward_flops_saved(task: SentimentTask, opts, seed: int, order: list[str], history: list[dict]) -> dict:
    """Backward matmul FLOPs embedded CMD saved, averaged over the run's steps, and at the end of the run.

    The embedded set grows at each embedding step (``history``, in ``order``); each distinct set is measured once
    with torch's FLOP counter on one batch of the recipe, with the embedded tensors frozen."""
    batch = task.first_batch(opts.batch_size)
    model = task.model(seed).train()

    def flops(frozen: set[str]) -> float:
        for name, param in model.named_parameters():
            param.requires_grad_(name not in frozen)
        return backward_flops(model, batch)

    full = flops(set())
    saved_from: list[tuple[int, float]] = []  # (step, share saved from that step on)
    count = 0
    for entry in history:
        count += entry["newly_embedded"]
        saved_from.append((entry["step"], 1 - flops(set(order[:count])) / full))
    per_step = [max([share for step, share in saved_from if step < s], default=0.0) for s in range(1, opts.steps + 1)]
    return {"run_average": statistics.mean(per_step), "at_end": per_step[-1]}


@torch.no_grad()
def accuracy_with(task: SentimentTask, model, weights: dict[str, torch.Tensor], split: str) -> float:
    """Accuracy of ``model`` with ``weights`` copied in (the model is left holding them)."""
    params = dict(model.named_parameters())
    for name, value in weights.items():
        params[name].copy_(value)
    return task.accuracy(model, split)


# ---- replayed averages ------------------------------------------------------------------------------------------
def online_variants(traj: Trajectory, variants: list[dict], candidates: int) -> dict[str, dict[str, torch.Tensor]]:
    """Online CMD weights at the last snapshot for each variant: one warm-up fit per (warmup, modes), one pass over
    the later snapshots feeding every forgetting factor of that fit."""
    out = {}
    groups: dict[tuple[int, int], list[dict]] = {}
    for variant in variants:
        groups.setdefault((variant["warmup"], variant["modes"]), []).append(variant)
    for (warmup, modes), members in groups.items():
        result = fit_cmd(Trajectory([c.folder for c in traj.checkpoints[:warmup]]), modes, candidates, seed=0)
        onlines = {variant_name(v): OnlineCMD.from_result(result, v["forgetting"]) for v in members}
        for index in range(warmup, len(traj)):
            snapshot = traj.load(index)
            for online in onlines.values():
                online.update(snapshot)
        last = traj.load(-1)
        out.update({name: online.weights(last) for name, online in onlines.items()})
    return out


def swa_variants(traj: Trajectory, starts: list[float], steps: int) -> dict[str, dict[str, torch.Tensor]]:
    """Uniform average of the snapshots from ``start`` × steps on (the last snapshot included)."""
    out = {}
    for start in starts:
        picks = [i for i, step in enumerate(traj.steps) if step >= start * steps]
        total = {n: t.double() for n, t in traj.load(picks[0]).items()}
        for index in picks[1:]:
            for name, value in traj.load(index).items():
                total[name] += value
        out[f"swa_from_{start:g}"] = {n: (t / len(picks)).float() for n, t in total.items()}
    return out


def variant_name(variant: dict) -> str:
    return f"online_w{variant['warmup']}_m{variant['modes']}_f{variant['forgetting']:g}"


def parse_variants(text: list[str]) -> list[dict]:
    """``W:M:F`` triples (warm-up snapshots, modes, forgetting); the first one is the default's."""
    out = []
    for item in text:
        warmup, modes, forgetting = item.split(":")
        out.append({"warmup": int(warmup), "modes": int(modes), "forgetting": float(forgetting)})
    return out


# ---- the benchmark -------------------------------------------------------------------------------------------
def seed_runs(task: SentimentTask, opts, seed: int, work: Path, chosen: dict | None) -> dict:
    """Run A and its replayed averages; on the first seed (``chosen`` None) pick each method's variant on
    validation; then run B (embedded CMD with the chosen online settings). Test accuracies of every arm."""
    variants = parse_variants(opts.online_variants)
    ema, clock_a = EMACallback(opts.ema_decays), StepClock()
    model, _ = train(task, work / "plain", opts, seed, [ema, clock_a], snapshot_every=opts.every)
    last = {n: p.detach().clone() for n, p in model.named_parameters()}
    traj = Trajectory(work / "plain" / "snapshots")
    candidates = {
        "last": last,
        **{f"ema_{d:g}": w for d, w in ema.averages.items()},
        **swa_variants(traj, opts.swa_starts, opts.steps),
        **online_variants(traj, variants if chosen is None else [chosen["online"], variants[0]], opts.candidates),
    }
    row: dict = {"seed": seed}
    if chosen is None:
        validation = {name: accuracy_with(task, model, w, "validation") for name, w in candidates.items()}
        print(json.dumps({"validation": validation}), flush=True)
        pick = lambda prefix: max((n for n in validation if n.startswith(prefix)), key=validation.get)  # noqa: E731
        chosen = {"ema": pick("ema_"), "swa": pick("swa_"), "online_name": pick("online_"), "validation": validation}
        chosen["online"] = next(v for v in variants if variant_name(v) == chosen["online_name"])
    keys = {
        "last_accuracy": "last",
        "ema_accuracy": chosen["ema"],
        "swa_accuracy": chosen["swa"],
        "online_cmd_accuracy": chosen["online_name"],
        "online_cmd_default_accuracy": variant_name(variants[0]),
    }
    row.update({key: accuracy_with(task, model, candidates[name], "test") for key, name in keys.items()})
    print(json.dumps(row), flush=True)
    del candidates, ema
    row.update(embedded_run(task, opts, seed, work, chosen["online"]))
    row["seconds_per_step_second_half_plain"] = clock_a.second_half_mean()
    print(json.dumps(row), flush=True)
    return {"row": row, "chosen": chosen, "model": model, "snapshots": work / "plain" / "snapshots"}


def embedded_run(task: SentimentTask, opts, seed: int, work: Path, online: dict) -> dict:
    """Run B: embedded CMD with the chosen online settings; its test accuracy and the backward work it saved."""
    clock_b = StepClock()
    embedded_model, embedded_cmd = train(
        task,
        work / "embedded",
        opts,
        seed,
        [clock_b],
        cmd_online=True,
        cmd_every=opts.every,
        cmd_warmup=online["warmup"],
        cmd_modes=online["modes"],
        cmd_forgetting=online["forgetting"],
        cmd_candidates=opts.candidates,
        cmd_save_model=False,
        cmd_embed_every=opts.embed_every,
        cmd_embed_fraction=opts.embed_fraction,
        cmd_embed_max=opts.embed_max,
        cmd_embed_order=opts.embed_order,
    )
    report = embedded_cmd.report(embedded_model)
    order = list(embedded_cmd.embedding.a)
    saved = run_backward_flops_saved(task, opts, seed, order, report["embedding_history"])
    return {
        "embedded_accuracy": task.accuracy(embedded_model, "test"),
        "embedded_validation_accuracy": task.accuracy(embedded_model, "validation"),  # to choose settings on
        "embedded_fraction": report["embedded_fraction"],
        "embedded_backward_flops_saved": saved["run_average"],
        "embedded_backward_flops_saved_at_end": saved["at_end"],
        "embedded_steps": [entry["step"] for entry in report["embedding_history"] if entry["newly_embedded"]],
        "embedded_tensors": len(order),
        "seconds_per_step_second_half_embedded": clock_b.second_half_mean(),
    }


def benchmark(opts, work: Path, started: float) -> None:
    """Run every seed (records in ``--records``), then assemble the result from all records there."""
    task = SentimentTask.load(max_length=opts.max_length)
    task.splits["gap"] = task.splits["validation"].select(range(opts.gap_reviews))
    for split, count in (("test", opts.test_reviews), ("validation", opts.select_reviews)):
        if count:
            task.splits[split] = task.splits[split].select(range(count))
    records = Path(opts.records)
    records.mkdir(parents=True, exist_ok=True)  # a crash later in the run keeps the finished seeds
    chosen = json.loads((records / "chosen.json").read_text()) if opts.reuse_choice else None
    for seed in opts.seeds:
        seed_work = work / f"seed-{seed}"
        done = seed_runs(task, opts, seed, seed_work, chosen)
        chosen = done["chosen"]
        (records / f"seed-{seed}.json").write_text(json.dumps(done["row"], indent=1))
        (records / "chosen.json").write_text(json.dumps(chosen, indent=1))
        if not (records / "posthoc.json").exists():  # memory and fidelity of the post-hoc fit: one trajectory
            record = posthoc_record(task, done["model"], done["snapshots"], seed_work, opts, seed)
            (records / "posthoc.json").write_text(json.dumps(record, indent=1))
        shutil.rmtree(seed_work)
    assemble(
        opts, records, started, test_reviews=len(task.splits["test"]), select_reviews=len(task.splits["validation"])
    )


def assemble(opts, records: Path, started: float | None, test_reviews: int, select_reviews: int) -> None:
    """The result from the records of every seed run so far (seeds may have run in separate processes).

    ``started`` is None when only assembling: the wall time of the seeds' runs is then not known here."""
    rows = sorted((json.loads(f.read_text()) for f in records.glob("seed-*.json")), key=lambda r: r["seed"])
    chosen = json.loads((records / "chosen.json").read_text())
    saved = json.loads((records / "posthoc.json").read_text())
    posthoc, trajectory_facts = posthoc_fields(saved), saved["trajectory"]
    seeds = [r["seed"] for r in rows]
    mean = lambda key: statistics.mean(r[key] for r in rows)  # noqa: E731
    per_seed = lambda key: [r[key] for r in rows]  # noqa: E731
    arms = ("last_accuracy", "online_cmd_accuracy", "online_cmd_default_accuracy", "ema_accuracy", "swa_accuracy")
    arms += ("embedded_accuracy",)
    result = {
        "seeds": seeds,
        "steps": opts.steps,
        "max_length": opts.max_length,
        "eval_examples": test_reviews,
        **{key: mean(key) for key in arms},
        **{f"{key}_per_seed": per_seed(key) for key in arms},
        **posthoc,
        "embedded_backward_flops_saved": mean("embedded_backward_flops_saved"),
        "embedded_backward_flops_saved_at_end": mean("embedded_backward_flops_saved_at_end"),
        "embedded_fraction": mean("embedded_fraction"),
        "embedded_accuracy_delta_points": 100 * (mean("embedded_accuracy") - mean("last_accuracy")),
        "chosen": {
            "online": chosen["online"],
            "ema_decay": chosen["ema"],
            "swa_start": chosen["swa"],
            "default_online": parse_variants(opts.online_variants)[0],
        },
        "validation_first_seed": chosen["validation"],
        "targets": {
            "fit_rss_le_quarter_of_naive": posthoc["fit_over_naive_peak_rss"] <= 0.25,
            "online_cmd_ge_last": mean("online_cmd_accuracy") >= mean("last_accuracy"),
            "embedded_saves_ge_20pct_backward_flops": mean("embedded_backward_flops_saved") >= 0.2,
            "embedded_within_0.5_points_of_last": mean("embedded_accuracy") >= mean("last_accuracy") - 0.005,
        },
        "per_seed": rows,
        "budget_note": (
            f"CPU, torch threads 1: seeds {seeds}, {opts.steps} steps of batch {opts.batch_size}, max_length "
            f"{opts.max_length}, lr {RECIPE['learning_rate']} linear decay, all weights trained; a snapshot every "
            f"{opts.every} steps. Variants scored on the {select_reviews} validation reviews of "
            f"seed {seeds[0]}: online "
            f"CMD {opts.online_variants} (warm-up snapshots:modes:forgetting), EMA decays {opts.ema_decays}, SWA "
            f"from {opts.swa_starts} of the run; the best of each on the {test_reviews} test reviews for "
            f"every seed. Embedded CMD every {opts.embed_every} snapshots, {opts.embed_fraction:.0%} per step, at "
            f"most {opts.embed_max:.0%}; its backward FLOPs saved are averaged over the run's steps (torch FLOP "
            f"counter, one batch per embedded set). accuracy_gap in points on {opts.gap_reviews} validation "
            f"reviews at {opts.eval_points} evenly spaced checkpoints; fit_seconds and the naive fit are for M=10, "
            f"fit_peak_rss_mb is the largest over M (post-hoc on seed {trajectory_facts['seed']}'s snapshots). "
            + opts.budget_note
        ),
        **({"benchmark_wall_seconds": time.perf_counter() - started} if started is not None else {}),
        **run_facts(),
    }
    write_result("cmd", result, TITLE, tables=tables(result))


def posthoc_record(task, model, snapshots: Path, work: Path, opts, seed: int) -> dict:
    """Memory and fidelity of post-hoc CMD on one trajectory: the streaming fits per M and the naive fit."""
    posthoc, fits = posthoc_section(task, model, snapshots, work, opts)
    naive = run_worker("naive", snapshots, 10, opts.candidates)
    trajectory = Trajectory(snapshots)
    facts = {"snapshots": len(trajectory), "parameters": trajectory.num_parameters, "seed": seed}
    return {"posthoc": posthoc, "fits": fits, "naive": naive, "trajectory": facts}


def posthoc_fields(saved: dict) -> dict:
    """The result's post-hoc keys from one ``posthoc_record`` (shared by a full run and ``--posthoc-only``)."""
    posthoc, fits, naive = saved["posthoc"], saved["fits"], saved["naive"]
    fit_peak = max(r["peak_rss_mb"] for r in fits)
    return {
        "fit_peak_rss_mb": fit_peak,
        "naive_peak_rss_mb": naive["peak_rss_mb"],
        "fit_over_naive_peak_rss": fit_peak / naive["peak_rss_mb"],
        "relative_reconstruction_error": posthoc["relative_reconstruction_error"],
        "relative_displacement_error": posthoc["relative_displacement_error"],
        "accuracy_gap": posthoc["accuracy_gap"],
        "fit_seconds": next(r for r in fits if r["modes"] == 10)["seconds"],
        "naive_seconds": naive["seconds"],
        "naive_relative_reconstruction_error_M10": naive["relative_reconstruction_error"],
        "gap_checkpoint_accuracy": posthoc["checkpoint_accuracy"],
        "accuracy_gap_per_checkpoint": posthoc["gap_per_checkpoint"],
        "trajectory": saved["trajectory"],
        "posthoc_fits": fits,
    }


def posthoc_only(opts, work: Path) -> None:
    """Re-measure only the post-hoc section on a fresh run of the first seed; the other keys of the existing
    result are kept, and the re-measure carries its own command, device, versions and date."""
    existing = RESULTS_DIR / "cmd.json"
    if not existing.exists():
        raise SystemExit(f"{existing} does not exist: run the full benchmark first (--posthoc-only updates it)")
    task = SentimentTask.load(max_length=opts.max_length)
    task.splits["gap"] = task.splits["validation"].select(range(opts.gap_reviews))
    seed = opts.seeds[0]
    model, _ = train(task, work / "plain", opts, seed, [], snapshot_every=opts.every)
    record = posthoc_record(task, model, work / "plain" / "snapshots", work, opts, seed)
    fields = posthoc_fields(record)
    result = json.loads(existing.read_text())
    targets = {**result["targets"], "fit_rss_le_quarter_of_naive": fields["fit_over_naive_peak_rss"] <= 0.25}
    result.update(fields, targets=targets)
    facts = run_facts()
    result["posthoc_run"] = {
        **{key: facts[key] for key in ("command", "device", "versions", "date")},
        "budget": f"seed {seed}, {opts.steps} steps, a snapshot every {opts.every} steps; " + opts.budget_note,
    }
    result["budget_note"] = mark_rerun(result["budget_note"], "post-hoc", "--posthoc-only", "posthoc_run")
    write_result("cmd", result, TITLE, tables=tables(result))


EMBEDDED_KEYS = ("embedded_fraction", "embedded_backward_flops_saved", "embedded_backward_flops_saved_at_end")


def embedded_only(opts, work: Path) -> None:
    """Re-run embedded CMD (run B) for ``--seeds`` against the full run's last weights; write when all seeds are in."""
    existing = RESULTS_DIR / "cmd.json"
    if not existing.exists():
        raise SystemExit(f"{existing} does not exist: run the full benchmark first (--embedded-only updates it)")
    result = json.loads(existing.read_text())
    online, records = result["chosen"]["online"], Path(opts.records)
    records.mkdir(parents=True, exist_ok=True)
    task = SentimentTask.load(max_length=opts.max_length)
    for split, count in (("test", opts.test_reviews), ("validation", opts.select_reviews)):
        if count:  # as in the full run: the first reviews of the split
            task.splits[split] = task.splits[split].select(range(count))
    if opts.hold_embedded:  # the control: same tensors at the same steps, kept at their value instead of a·r + b
        hf_efftrain.cmd.callback.Embedding = HeldEmbedding
    for seed in [] if opts.assemble else opts.seeds:  # --assemble: only write from the records
        row = {"seed": seed, **embedded_run(task, opts, seed, work / f"seed-{seed}", online)}
        if opts.check_last:
            model, _ = train(task, work / f"seed-{seed}" / "plain", opts, seed, [])
            row["last_accuracy_rerun"] = task.accuracy(model, "test")
        print(json.dumps(row), flush=True)
        (records / f"embedded-seed-{seed}.json").write_text(json.dumps(row, indent=1))
    rows = {r["seed"]: r for r in (json.loads(f.read_text()) for f in records.glob("embedded-seed-*.json"))}
    missing = [s for s in result["seeds"] if s not in rows]
    if opts.hold_embedded and rows and (opts.assemble or not missing):  # a control may cover fewer seeds
        write_frozen_control(json.loads(existing.read_text()), [rows[s] for s in sorted(rows)], opts)
        return
    if missing:
        print(f"embedded records wait for seeds {missing} (run them with the same --records)", flush=True)
        return
    result = json.loads(existing.read_text())  # read again: another run may have updated it meanwhile
    update_embedded(result, [rows[s] for s in result["seeds"]], opts)
    write_result(opts.name, result, TITLE, tables=tables(result))


class HeldEmbedding(Embedding):
    """Embedded tensors that keep the value they had when embedded: plain freezing, CMD's choice of what and when."""

    def apply(self, model) -> None:
        return None


def write_frozen_control(result: dict, rows: list[dict], opts) -> None:
    """``cmd_frozen_control.json``: the embedded run's tensors frozen at their value, against the last weights."""
    seeds = [r["seed"] for r in rows]
    accuracies = [r["embedded_accuracy"] for r in rows]
    last = [result["last_accuracy_per_seed"][result["seeds"].index(s)] for s in seeds]
    embedded = [result["embedded_accuracy_per_seed"][result["seeds"].index(s)] for s in seeds]
    control = {
        "seeds": seeds,
        "frozen_accuracy": statistics.mean(accuracies),
        "frozen_accuracy_per_seed": accuracies,
        "frozen_validation_accuracy_per_seed": [r["embedded_validation_accuracy"] for r in rows],
        "embedded_accuracy_per_seed": embedded,
        "last_accuracy_per_seed": last,
        "frozen_minus_embedded_points": 100 * (statistics.mean(accuracies) - statistics.mean(embedded)),
        "frozen_minus_last_points": 100 * (statistics.mean(accuracies) - statistics.mean(last)),
        "backward_flops_saved": statistics.mean(r["embedded_backward_flops_saved"] for r in rows),
        "per_seed": rows,
        "budget_note": (
            f"Control for embedded CMD: the tensors embedded CMD chooses (order {opts.embed_order}, every "
            f"{opts.embed_every} snapshots, {opts.embed_fraction:.0%} per step, at most {opts.embed_max:.0%}, online "
            f"settings {result['chosen']['online']}) are frozen at the same steps but keep their value instead of "
            f"following a·r(t) + b. {opts.steps} steps, the shared recipe; embedded and last accuracies of the same "
            f"seeds from cmd.json ({result.get('embedded_run', {}).get('command', result['command'])}). "
            + opts.budget_note
        ),
        **run_facts(),
    }
    name = "cmd_frozen_control" if opts.name == "cmd" else opts.name  # --name keeps an earlier control's file
    write_result(name, control, "Embedded CMD against freezing the same tensors", {"Per seed": rows})


def update_embedded(result: dict, rows: list[dict], opts) -> None:
    """Replace the embedded-CMD keys of ``result`` by ``rows`` (one per seed, in its seed order); the runs they
    replace stay under ``embedded_previous_runs``."""
    previous = {key: result.get(key) for key in ("embedded_accuracy", "embedded_accuracy_per_seed", *EMBEDDED_KEYS)}
    settings = re.search(r"Embedded CMD every [^;]*", result["budget_note"])
    previous["run"] = result.get("embedded_run") or {
        "command": "the full run's run B: " + result["command"],
        "budget": (settings.group(0) if settings else "see budget_note") + " (order movement, the paper's rule)",
    }
    result.setdefault("embedded_previous_runs", []).append(previous)
    mean = lambda key: statistics.mean(r[key] for r in rows)  # noqa: E731
    accuracies = [r["embedded_accuracy"] for r in rows]
    result.update(
        embedded_accuracy=statistics.mean(accuracies),
        embedded_accuracy_per_seed=accuracies,
        **{key: mean(key) for key in EMBEDDED_KEYS},
        embedded_accuracy_delta_points=100 * (statistics.mean(accuracies) - result["last_accuracy"]),
    )
    result["targets"].update(
        embedded_saves_ge_20pct_backward_flops=result["embedded_backward_flops_saved"] >= 0.2,
        **{"embedded_within_0.5_points_of_last": result["embedded_accuracy"] >= result["last_accuracy"] - 0.005},
    )
    for seed_row, row in zip(result["per_seed"], rows, strict=True):
        seed_row.update({k: v for k, v in row.items() if k != "seed"})
    facts = run_facts()
    result["embedded_run"] = {
        **{key: facts[key] for key in ("command", "device", "versions", "date")},
        "budget": (
            f"seeds {result['seeds']}, {opts.steps} steps, a snapshot every {opts.every} steps, online settings "
            f"{result['chosen']['online']} (the full run's choice); embedded CMD order {opts.embed_order}, every "
            f"{opts.embed_every} snapshots, {opts.embed_fraction:.0%} per step, at most {opts.embed_max:.0%}. "
            "Compared with the full run's last weights of each seed. " + opts.budget_note
        ),
    }
    result["budget_note"] = mark_rerun(result["budget_note"], "embedded-CMD", "--embedded-only", "embedded_run")


def mark_rerun(note: str, keys: str, option: str, field: str) -> str:
    """The full run's budget note, with a pointer saying some of its figures were replaced (once)."""
    pointer = f" [The {keys} keys were re-measured later by {option}: see {field}.]"
    return note if pointer in note else note + pointer


def tables(result: dict) -> dict[str, list[dict]]:
    return {"Per seed (test accuracy)": result["per_seed"], "Post-hoc fits per M (first seed)": result["posthoc_fits"]}


def posthoc_section(task, model, snapshots: Path, work: Path, opts) -> tuple[dict, list[dict]]:
    traj = Trajectory(snapshots)
    picks = np.unique(np.linspace(0, len(traj) - 1, opts.eval_points).round().astype(int)).tolist()
    truth = {i: accuracy_with(task, model, traj.load(i), "gap") for i in picks}
    out: dict = {"relative_reconstruction_error": {}, "accuracy_gap": {}, "relative_displacement_error": {}}
    out["gap_per_checkpoint"] = {}
    rows = []
    for modes in MODES:
        facts = run_worker("fit", snapshots, work / f"cmd-{modes}", modes, opts.candidates)
        result = CMDResult.load(work / f"cmd-{modes}")
        gaps = {i: abs(accuracy_with(task, model, result.reconstruct(traj.steps[i]), "gap") - truth[i]) for i in picks}
        out["relative_reconstruction_error"][str(modes)] = facts["relative_reconstruction_error"]
        out["relative_displacement_error"][str(modes)] = facts["relative_displacement_error"]
        out["accuracy_gap"][str(modes)] = 100 * max(gaps.values())
        out["gap_per_checkpoint"][str(modes)] = {str(traj.steps[i]): 100 * g for i, g in gaps.items()}
        rows.append({"modes": modes, **facts, "accuracy_gap_points": 100 * max(gaps.values())})
        print(json.dumps(rows[-1]), flush=True)
    out["checkpoint_accuracy"] = {str(traj.steps[i]): truth[i] for i in picks}
    return out, rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=5, help="snapshot every N steps (post-hoc and online CMD)")
    parser.add_argument("--batch-size", type=int, default=RECIPE["per_device_train_batch_size"])
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--eval-points", type=int, default=5, help="checkpoints where accuracy_gap is measured")
    parser.add_argument("--gap-reviews", type=int, default=400, help="validation reviews for accuracy_gap")
    parser.add_argument("--test-reviews", type=int, default=0, help="first test reviews scored (0 = all; smoke runs)")
    parser.add_argument("--select-reviews", type=int, default=0, help="validation reviews for the choice (0 = all)")
    parser.add_argument(
        "--online-variants",
        nargs="+",
        default=["10:5:1", "10:5:0.9", "10:5:0.7"],
        help="online CMD variants W:M:F (warm-up snapshots, modes, forgetting); the first is the default",
    )
    parser.add_argument("--ema-decays", type=float, nargs="+", default=[0.99, 0.998])
    parser.add_argument("--swa-starts", type=float, nargs="+", default=[0.5, 0.75])
    parser.add_argument("--embed-every", type=int, default=5)
    parser.add_argument("--embed-fraction", type=float, default=0.05)
    parser.add_argument("--embed-max", type=float, default=0.25)
    parser.add_argument("--embed-order", choices=["movement", "input_first"], default="movement")
    parser.add_argument(
        "--embedded-only", action="store_true", help="re-run only embedded CMD (run B) per seed; keep the rest"
    )
    parser.add_argument("--check-last", action="store_true", help="with --embedded-only: re-run run A too")
    parser.add_argument(
        "--name",
        default="cmd",
        help="with --embedded-only: result file name (another name keeps cmd.json, or with --hold-embedded "
        "cmd_frozen_control.json, as it is)",
    )
    parser.add_argument(
        "--hold-embedded",
        action="store_true",
        help="with --embedded-only: control arm, embedded tensors keep their value (cmd_frozen_control.json)",
    )
    parser.add_argument("--work-dir", default=None)
    parser.add_argument("--records", default=str(RECORDS), help="per-seed records (kept until the next run)")
    parser.add_argument("--reuse-choice", action="store_true", help="use the variants chosen in --records")
    parser.add_argument("--assemble", action="store_true", help="only write the result from --records")
    parser.add_argument(
        "--posthoc-only", action="store_true", help="re-measure the post-hoc keys on the first seed; keep the rest"
    )
    parser.add_argument("--budget-note", default="")
    opts = parser.parse_args(argv)
    torch.set_num_threads(1)
    if opts.worker:
        kind, *rest = opts.worker
        facts = (
            worker_fit(rest[0], rest[1], int(rest[2]), int(rest[3]))
            if kind == "fit"
            else worker_naive(rest[0], int(rest[1]), int(rest[2]))
        )
        print(json.dumps(facts))
        return
    if opts.assemble and not opts.embedded_only:
        task = SentimentTask.load(max_length=opts.max_length)
        test = opts.test_reviews or len(task.splits["test"])
        assemble(opts, Path(opts.records), None, test, opts.select_reviews or len(task.splits["validation"]))
        return
    with tempfile.TemporaryDirectory(dir=opts.work_dir) as tmp:
        if opts.posthoc_only:
            posthoc_only(opts, Path(tmp))
        elif opts.embedded_only:
            embedded_only(opts, Path(tmp))
        else:
            benchmark(opts, Path(tmp), time.perf_counter())


if __name__ == "__main__":
    main()
