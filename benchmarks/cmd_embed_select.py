"""Embedded CMD's setting chosen on validation: how deep an input-side prefix to embed, and so when.

Issue 17 asks embedded CMD to save ≥ 20% of the backward FLOPs within 0.5 points of the last weights. Embedding a
prefix of the network (``input_first``) saves its whole backward pass; the deeper the prefix, the later it can be
embedded for the same saving, after the lower layers have settled and the learning rate has decayed. Stop 29 chose
its embedding steps after seeing test accuracy; this benchmark makes the choice on validation only:

- Candidate L: the embeddings plus the first L encoder layers, all embedded at one snapshot step, the latest one at
  which the run average still saves ``--min-saving`` of the backward FLOPs. The saving per prefix is measured with
  torch's FLOP counter on one batch before any training, so every candidate meets the saving goal by construction.
- Every candidate and the plain run (its last weights) train every seed: the shared recipe, the online CMD settings
  the full ``benchmarks.cmd`` run chose. The candidate with the best mean validation accuracy (1,000 reviews per
  seed) is the choice; its test accuracies replace the embedded keys of ``cmd.json``. The test accuracy of every
  candidate is reported beside it, never used to choose. Writes ``benchmarks/results/cmd_embed_select.json``::

    python -m benchmarks.cmd_embed_select --jobs 2
    python -m benchmarks.cmd_embed_select --assemble        # only choose and write, from the records
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from benchmarks.cmd import embedded_run, train, update_embedded
from benchmarks.harness import RESULTS_DIR, run_facts, write_result
from benchmarks.sentiment import RECIPE, SentimentTask
from hf_efftrain.cmd.embedded import backward_flops, input_first_limit, matmul_weight_sizes

TITLE = "Embedded CMD: the input-side prefix chosen on validation"
RECORDS = Path(__file__).parent / ".work" / "cmd_embed_select"  # per-run records (gitignored)
LAYER = re.compile(r"\.layers?\.(\d+)\.")


def prefix_names(names: list[str], layers: int) -> list[str]:
    """Parameters before the first one of layer ``layers`` (the embeddings and layers 0 … layers-1)."""
    out = []
    for name in names:
        found = LAYER.search(name)
        if found is None and out and LAYER.search(out[-1]):  # past the last layer: pooler, head
            break
        if found is not None and int(found.group(1)) >= layers:
            break
        out.append(name)
    return out


def prefix_candidates(
    model: nn.Module, batch: dict, layers: list[int], steps: int, first_step: int, every: int, min_saving: float
) -> list[dict]:
    """For each prefix depth: its ``embed_max``, the latest snapshot step that still saves ``min_saving`` of the
    backward FLOPs over the run, and the FLOP shares behind it. Depths that cannot save that much are left out.

    A snapshot step ``first_step + every·k`` (k ≥ 1) embeds from the next step on, so the run average is the share
    saved at the end times (steps − step) / steps."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    work = matmul_weight_sizes(model)
    total = sum(work.get(n, 0) for n in names)
    full = backward_flops(model, batch)
    out = []
    for depth in layers:
        prefix = prefix_names(names, depth)
        next_matrix = next(work[n] for n in names[len(prefix) :] if n in work)
        budget = (sum(work.get(n, 0) for n in prefix) + next_matrix / 2) / total  # the prefix fits, one more does not
        if input_first_limit(names, work, budget) != set(prefix):
            raise ValueError(f"a {depth}-layer prefix is not what input_first embeds at budget {budget:.4f}")
        for name, param in model.named_parameters():
            param.requires_grad_(name not in prefix)
        saved_at_end = 1 - backward_flops(model, batch) / full
        for name, param in model.named_parameters():
            param.requires_grad_(name in names)
        latest = int(steps * (1 - min_saving / saved_at_end)) if saved_at_end > min_saving else 0
        k = (latest - first_step) // every
        while k >= 1 and saved_at_end * (steps - first_step - every * k) / steps < min_saving:
            k -= 1  # int() rounding can land on the boundary
        if k < 1:
            continue
        step = first_step + every * k
        out.append(
            {
                "layers": depth,
                "embed_max": budget,
                "embed_every": k,
                "embedding_step": step,
                "backward_flops_saved_at_end": saved_at_end,
                "backward_flops_saved_predicted": saved_at_end * (steps - step) / steps,
            }
        )
    return out


def step_seconds(model: nn.Module, batch: dict, prefix: list[str], repeats: int) -> dict:
    """Wall seconds of one training step (forward, backward, AdamW) with every tensor trained and with ``prefix``
    frozen, interleaved so that load changes hit both alike; medians over ``repeats`` pairs."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    timings: dict[str, list[float]] = {"full": [], "embedded": []}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-12)  # skips grad None
    for _ in range(repeats + 1):  # the first pair allocates the optimizer state and is dropped
        for arm, frozen in (("full", set()), ("embedded", set(prefix))):
            for name, param in model.named_parameters():
                param.requires_grad_(name in names and name not in frozen)
            started = time.perf_counter()
            model(**batch).loss.backward()
            optimizer.step()
            timings[arm].append(time.perf_counter() - started)
            model.zero_grad(set_to_none=True)
    for name, param in model.named_parameters():
        param.requires_grad_(name in names)
    full, embedded = (statistics.median(timings[arm][1:]) for arm in ("full", "embedded"))
    return {"seconds_per_step_full": full, "seconds_per_step_embedded": embedded, "step_seconds_ratio": embedded / full}


def choose(rows: list[dict], min_saving: float) -> dict:
    """The candidate with the best mean validation accuracy (ties: the larger measured saving) among those whose
    runs saved ``min_saving`` as measured; only validation is looked at.

    Why the measured saving: a mode with no member outside the prefix keeps its reference inside it, and the
    prefix then stops there (the whole encoder, for instance, when the head holds few tensors)."""
    by_layers: dict[int, list[dict]] = {}
    for row in rows:
        if row["arm"] == "embedded":
            by_layers.setdefault(row["layers"], []).append(row)
    by_layers = {
        depth: group
        for depth, group in by_layers.items()
        if statistics.mean(r["embedded_backward_flops_saved"] for r in group) >= min_saving
    }
    if not by_layers:
        raise ValueError(f"no candidate saved {min_saving:.0%} of the backward FLOPs in its runs")
    seeds = {frozenset(r["seed"] for r in group) for group in by_layers.values()}
    if len(seeds) != 1:
        raise ValueError(f"candidates ran on different seeds: {sorted(map(sorted, seeds))}")
    score = {
        depth: (
            statistics.mean(r["embedded_validation_accuracy"] for r in group),
            statistics.mean(r["embedded_backward_flops_saved"] for r in group),
        )
        for depth, group in by_layers.items()
    }
    best = max(score, key=score.get)
    return {"layers": best, "validation_accuracy": score[best][0], "scores": score}


# ---- one run per process ------------------------------------------------------------------------------------
def run_opts(opts, candidate: dict | None) -> SimpleNamespace:
    """The ``benchmarks.cmd`` options one run needs (the candidate's embedding, all of it at one step)."""
    embed = {"embed_every": 0, "embed_fraction": 1.0, "embed_max": 0.0}
    if candidate is not None:
        embed = {"embed_every": candidate["embed_every"], "embed_fraction": 1.0, "embed_max": candidate["embed_max"]}
    return SimpleNamespace(
        steps=opts.steps,
        every=opts.every,
        batch_size=opts.batch_size,
        candidates=opts.cmd_candidates,
        embed_order="input_first",
        **embed,
    )


def worker(opts, arm: str, seed: int, candidate: dict | None, out: Path) -> None:
    """One training run (plain, or embedded CMD for ``candidate``) and its validation and test accuracy."""
    task = SentimentTask.load(max_length=opts.max_length)
    online = json.loads((RESULTS_DIR / "cmd.json").read_text())["chosen"]["online"]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if arm == "plain":
            model, _ = train(task, Path(tmp), run_opts(opts, None), seed, [])
            row = {
                "last_accuracy": task.accuracy(model, "test"),
                "last_validation_accuracy": task.accuracy(model, "validation"),
            }
        else:
            row = {
                "layers": candidate["layers"],
                **embedded_run(task, run_opts(opts, candidate), seed, Path(tmp), online),
            }
    row.update(arm=arm, seed=seed, seconds=time.perf_counter() - started)
    out.write_text(json.dumps(row, indent=1))
    print(json.dumps(row), flush=True)


def record_path(records: Path, arm: str, seed: int, layers: int | None) -> Path:
    return records / (f"plain-seed-{seed}.json" if arm == "plain" else f"embedded-L{layers}-seed-{seed}.json")


def run_all(opts, candidates: list[dict], records: Path) -> None:
    """Every (arm, seed) without a record, ``--jobs`` processes at a time, one torch thread each."""
    jobs = [("plain", seed, None) for seed in opts.seeds]
    jobs += [("embedded", seed, c) for c in candidates for seed in opts.seeds]
    todo = [job for job in jobs if not record_path(records, job[0], job[1], (job[2] or {}).get("layers")).exists()]

    def launch(job) -> None:
        arm, seed, candidate = job
        out = record_path(records, arm, seed, (candidate or {}).get("layers"))
        command = [sys.executable, "-m", "benchmarks.cmd_embed_select", "--worker", arm, str(seed), str(out)]
        command += ["--candidate", json.dumps(candidate or {}), *forwarded(opts)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f"{arm} seed {seed} failed:\n{done.stderr[-3000:]}")

    with ThreadPoolExecutor(opts.jobs) as pool:
        list(pool.map(launch, todo))


def forwarded(opts) -> list[str]:
    return [
        *("--steps", str(opts.steps), "--every", str(opts.every), "--batch-size", str(opts.batch_size)),
        *("--max-length", str(opts.max_length), "--cmd-candidates", str(opts.cmd_candidates)),
    ]


def assemble(opts, candidates: list[dict], records: Path) -> None:
    """Choose on validation, write ``cmd_embed_select.json``, and put the choice's runs into ``cmd.json``."""
    rows = [json.loads(f.read_text()) for f in sorted(records.glob("*-seed-*.json"))]
    rows = [r for r in rows if r["seed"] in opts.seeds]
    plain = {r["seed"]: r for r in rows if r["arm"] == "plain"}
    pick = choose(rows, opts.min_saving)
    summary = []
    for candidate in candidates:
        group = sorted((r for r in rows if r.get("layers") == candidate["layers"]), key=lambda r: r["seed"])
        if not group:
            continue
        mean = lambda key, group=group: statistics.mean(r[key] for r in group)  # noqa: E731
        summary.append(
            {
                **candidate,
                "validation_accuracy": mean("embedded_validation_accuracy"),
                "test_accuracy": mean("embedded_accuracy"),
                "backward_flops_saved": mean("embedded_backward_flops_saved"),
                "validation_minus_last_points": 100
                * (mean("embedded_validation_accuracy") - _mean(plain, "last_validation_accuracy")),
                "test_minus_last_points": 100 * (mean("embedded_accuracy") - _mean(plain, "last_accuracy")),
                "test_accuracy_per_seed": [r["embedded_accuracy"] for r in group],
                "validation_accuracy_per_seed": [r["embedded_validation_accuracy"] for r in group],
                "eligible": mean("embedded_backward_flops_saved") >= opts.min_saving,
                "chosen": candidate["layers"] == pick["layers"],
            }
        )
    chosen = next(c for c in summary if c["chosen"])
    timing = measured_step_seconds(opts, pick["layers"])
    after = (opts.steps - chosen["embedding_step"]) / opts.steps  # share of the steps run with the prefix embedded
    cmd_result = json.loads((RESULTS_DIR / "cmd.json").read_text())
    full_run_last = dict(zip(cmd_result["seeds"], cmd_result["last_accuracy_per_seed"], strict=True))
    result = {
        "seeds": opts.seeds,
        "steps": opts.steps,
        "max_length": opts.max_length,
        "eval_examples": len(SentimentTask.load(max_length=opts.max_length).splits["test"]),
        "min_saving": opts.min_saving,
        "chosen_layers": pick["layers"],
        "chosen_embedding_step": chosen["embedding_step"],
        "embedded_accuracy": chosen["test_accuracy"],
        "embedded_backward_flops_saved": chosen["backward_flops_saved"],
        "last_accuracy": _mean(plain, "last_accuracy"),
        "last_accuracy_per_seed": [plain[s]["last_accuracy"] for s in sorted(plain)],
        "last_validation_accuracy": _mean(plain, "last_validation_accuracy"),
        "last_matches_full_run": all(plain[s]["last_accuracy"] == full_run_last.get(s) for s in plain),
        "embedded_minus_last_points": chosen["test_minus_last_points"],
        "step_seconds": timing,
        "training_time_saved_from_step_times": after * (1 - timing["step_seconds_ratio"]),
        "targets": {
            "embedded_saves_ge_20pct_backward_flops": chosen["backward_flops_saved"] >= 0.2,
            "embedded_within_0.5_points_of_last": chosen["test_minus_last_points"] >= -0.5,
        },
        "candidates": summary,
        "per_run": rows,
        "online": cmd_result["chosen"]["online"],
        "budget_note": (
            f"CPU, torch threads 1, {opts.jobs} runs at a time: seeds {opts.seeds}, {opts.steps} steps of batch "
            f"{opts.batch_size}, max_length {opts.max_length}, lr {RECIPE['learning_rate']} linear decay; online CMD "
            f"{cmd_result['chosen']['online']} with a snapshot every {opts.every} steps (cmd.json's choice). "
            f"Candidate L embeds the embeddings and layers 0..L-1 at the latest snapshot step whose run average "
            f"saves >= {opts.min_saving:.0%} of the backward FLOPs (torch FLOP counter, one batch). Chosen by the "
            "mean validation accuracy over the seeds (1,000 reviews each); test accuracies are reported, not used. "
            f"step_seconds: one training step of the recipe's batch with every tensor trained and with the chosen "
            f"prefix frozen, {opts.time_repeats} interleaved pairs, medians; training_time_saved_from_step_times "
            "applies that ratio to the steps after the embedding step (CMD's own updates and evaluation excluded). "
            + opts.budget_note
        ),
        **run_facts(),
    }
    write_result("cmd_embed_select", result, TITLE, {"Candidates": summary})
    if opts.update_cmd:
        # selection bookkeeping, and a step time from another machine than the full run's plain timing beside it
        dropped = ("arm", "layers", "seconds", "seconds_per_step_second_half_embedded")
        by_seed = {
            r["seed"]: {k: v for k, v in r.items() if k not in dropped}
            for r in rows
            if r.get("layers") == pick["layers"]
        }
        cmd_result = json.loads((RESULTS_DIR / "cmd.json").read_text())
        note = (
            f"Setting chosen on validation by benchmarks.cmd_embed_select (cmd_embed_select.json): the embeddings and "
            f"layers 0-{pick['layers'] - 1} embedded at step {chosen['embedding_step']}. " + opts.budget_note
        )
        embed_opts = SimpleNamespace(**vars(run_opts(opts, chosen)), budget_note=note)
        update_embedded(cmd_result, [by_seed[s] for s in cmd_result["seeds"]], embed_opts)
        for row in cmd_result["per_seed"]:  # the replaced run's step time: step times are in cmd_embed_select.json
            row.pop("seconds_per_step_second_half_embedded", None)
        from benchmarks.cmd import tables

        write_result(
            "cmd", cmd_result, "CMD: post-hoc, online and embedded on MiniLM / Rotten Tomatoes", tables(cmd_result)
        )


def _mean(rows: dict[int, dict], key: str) -> float:
    return statistics.mean(r[key] for r in rows.values())


def _probe(opts) -> tuple[nn.Module, dict]:
    """MiniLM with seed 0's head, in training mode, and the recipe's first training batch: what is measured on."""
    task = SentimentTask.load(max_length=opts.max_length)
    return task.model(0).train(), task.first_batch(opts.batch_size)


def measured_step_seconds(opts, layers: int) -> dict:
    """Step time with and without the chosen prefix (cached with the records: measure it on an idle machine)."""
    cache = Path(opts.records) / f"step-seconds-L{layers}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    model, batch = _probe(opts)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    out = {**step_seconds(model, batch, prefix_names(names, layers), opts.time_repeats), "repeats": opts.time_repeats}
    out["threads"] = torch.get_num_threads()
    cache.write_text(json.dumps(out, indent=1))
    return out


def measured_candidates(opts) -> list[dict]:
    """The prefix candidates of MiniLM-L6 on one batch of the recipe (cached with the records)."""
    cache = Path(opts.records) / "candidates.json"
    if cache.exists():
        return json.loads(cache.read_text())
    model, batch = _probe(opts)
    online = json.loads((RESULTS_DIR / "cmd.json").read_text())["chosen"]["online"]
    first = online["warmup"] * opts.every  # the snapshot that ends the warm-up
    out = prefix_candidates(model, batch, opts.layers, opts.steps, first, opts.every, opts.min_saving)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(out, indent=1))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--candidate", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--layers",
        type=int,
        nargs="+",
        default=[1, 2, 3, 4, 5],
        help="prefix depths to try (all 6 layers: modes without a member in the head keep references inside)",
    )
    parser.add_argument("--min-saving", type=float, default=0.2, help="backward FLOPs each candidate saves")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=4, help="snapshot every N steps (as in cmd.json's run)")
    parser.add_argument("--batch-size", type=int, default=RECIPE["per_device_train_batch_size"])
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--cmd-candidates", type=int, default=1000, help="candidate columns of the warm-up fit")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--time-repeats", type=int, default=20, help="interleaved step pairs timed for the choice")
    parser.add_argument("--records", default=str(RECORDS))
    parser.add_argument("--assemble", action="store_true", help="only choose and write, from the records")
    parser.add_argument("--no-update-cmd", dest="update_cmd", action="store_false", help="leave cmd.json as it is")
    parser.add_argument("--budget-note", default="")
    opts = parser.parse_args(argv)
    torch.set_num_threads(1)
    if opts.worker:
        arm, seed, out = opts.worker
        worker(opts, arm, int(seed), json.loads(opts.candidate) or None, Path(out))
        return
    records = Path(opts.records)
    records.mkdir(parents=True, exist_ok=True)
    candidates = measured_candidates(opts)
    print(json.dumps(candidates), flush=True)
    if not opts.assemble:
        run_all(opts, candidates, records)
    assemble(opts, candidates, records)


if __name__ == "__main__":
    main()
