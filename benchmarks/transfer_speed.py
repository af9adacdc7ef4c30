"""Benchmark: seconds per trajectory-transfer step (FGMT) on the real MiniLM-L6, old code against new, interleaved.

The source trajectory is MiniLM-L6 with a seed-0 classifier head, θ_0 → θ_T by a short AdamW fine-tuning on
Rotten Tomatoes; the target initialization is MiniLM-L6 with a seed-1 head (the issue's real-model scenario).
Gradients use the CLI's default batches (``TransferConfig()``: 2 batches of 32 reviews, 64 tokens, cosine spacing
over T = ``TransferConfig().steps`` points, 20); the first ``--steps`` transfer steps are timed (default: all T, the
whole transfer a user waits for; the first step, from the identity, costs about twice a later one). Each repeat runs
the code before the speed-up (a separate checkout, ``--old``) and the current code in fresh processes, alternating
which goes first, so that load from other users of the machine hits both alike. ``--sweeps 100 1`` also runs the
current code with the coordinate descent capped at 1 sweep per step (``TransferConfig.max_sweeps``), in the same
rotation, and reports its time and the matching objective it reaches against the uncapped run's. The new code
runs with the prior the CLI would choose for these starts (``--prior default``; a shared body: the identity prior,
warm-started); ``--plain-too`` also times it with plain matching, the old code's algorithm. Writes
``benchmarks/results/transfer_speed.json`` and ``.md``::

    git worktree add --detach /tmp/transfer-old 263935f     # the commit before the speed-up
    python -m benchmarks.transfer_speed --old /tmp/transfer-old [--new /tmp/transfer-new] [--sweeps 100 1] [--plain-too]
    python -m benchmarks.transfer_speed --model smollm2 --finetune-steps 4 --repeats 1 --name transfer_speed_smollm2

The MiniLM run also puts its figure into ``transfer.json`` (``minilm_seconds_per_step``, see
:func:`link_transfer_result`). ``--model smollm2`` times the current code alone on SmolLM2-135M (the old code would
take hours), with ``--batch-size`` 64-token blocks per gradient.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch

ROOT = Path(__file__).resolve().parent.parent


def _default_transfer_steps() -> int:
    """T of the CLI's default transfer: the MiniLM scenario's gradient batches are built for it."""
    from hf_efftrain.transfer import TransferConfig

    return TransferConfig().steps


def build_scenario(file: Path, finetune_steps: int) -> None:
    """θ_0, θ_T, the target init and the CLI's default gradient batches, saved to ``file``."""
    from transformers import AutoTokenizer

    from hf_efftrain.data import minilm_path
    from hf_efftrain.tasks import load_splits
    from hf_efftrain.transfer import TransferConfig
    from hf_efftrain.transfer.tool import gradient_batches, task_data

    config = TransferConfig()
    source = _model(seed=0)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    rows = config.steps * config.batches_per_step * config.batch_size
    train, _, collate = task_data(source, tokenizer, load_splits("rotten_tomatoes"), config.seed, rows, 1, 64)
    batches = gradient_batches(train, collate, config)
    theta_0 = {n: p.detach().clone() for n, p in source.named_parameters()}
    optimizer = torch.optim.AdamW(source.parameters(), lr=5e-5)
    source.train()
    flat = [b for step in batches for b in step]
    for i in range(finetune_steps):
        source(**flat[i % len(flat)]).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    theta_t = {n: p.detach().clone() for n, p in source.named_parameters()}
    target = {n: p.detach().clone() for n, p in _model(seed=1).named_parameters()}
    torch.save({"theta_0": theta_0, "theta_t": theta_t, "target": target, "batches": batches}, file)


def build_smollm2_scenario(file: Path, finetune_steps: int, steps: int, batch_size: int) -> None:
    """SmolLM2-135M: θ_0 the offline model, θ_T after ``finetune_steps`` AdamW steps on Wikipedia blocks, the target
    the same model fine-tuned as long on another data order (a differently fine-tuned target: no group is equal to
    the source's start, so every group is matched); gradient batches of ``batch_size`` 64-token blocks, 1 per step."""
    from transformers import AutoTokenizer

    from hf_efftrain.data import smollm2_path
    from hf_efftrain.tasks import load_splits
    from hf_efftrain.transfer import TransferConfig
    from hf_efftrain.transfer.tool import gradient_batches, task_data

    config = TransferConfig(steps=steps, batches_per_step=1, batch_size=batch_size)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_path())
    model = _smollm2()
    rows = (steps + 2 * finetune_steps) * batch_size
    train, _, collate = task_data(model, tokenizer, load_splits("wikipedia"), config.seed, rows, 1, 64)
    batches = gradient_batches(train, collate, config)
    theta_0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    loader = gradient_batches(train, collate, dataclasses.replace(config, steps=2 * finetune_steps))
    ends = []
    for order in (loader[:finetune_steps], loader[finetune_steps:]):
        model.load_state_dict(theta_0, strict=False)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        model.train()
        for (batch,) in order:
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        ends.append({n: p.detach().clone() for n, p in model.named_parameters()})
    torch.save({"theta_0": theta_0, "theta_t": ends[0], "target": ends[1], "batches": batches}, file)


def _smollm2():
    from transformers import LlamaForCausalLM

    from hf_efftrain.data import smollm2_path

    return LlamaForCausalLM.from_pretrained(smollm2_path(), dtype=torch.float32)


def _model(seed: int):
    from transformers import BertForSequenceClassification
    from transformers.utils import logging

    from hf_efftrain.data import minilm_path

    logging.set_verbosity_error()  # the head is new by design: no missing-weights report
    torch.manual_seed(seed)
    return BertForSequenceClassification.from_pretrained(minilm_path(), num_labels=2)


def worker(file: Path, steps: int, max_sweeps: int = 100, model_name: str = "minilm", prior: str = "plain") -> dict:
    """Time the first ``steps`` FGMT steps with whichever ``hf_efftrain`` is importable (old or new).

    ``prior="default"`` resolves the matching's prior and warm start from the two starts, as the CLI and
    ``TransferConfig`` do (``stay=None``, ``stay_at="auto"``, ``warm_start=None``); ``"plain"`` passes none of them
    (code before the prior has no such arguments): plain matching, each step warm-started from the previous one."""
    import hf_efftrain
    from hf_efftrain.transfer import InterpolatedPath, LossGradients, permutation_spec, spacing, transfer_trajectory

    torch.set_num_threads(2)
    data = torch.load(file)
    model = _model(seed=1) if model_name == "minilm" else _smollm2()
    spec = permutation_spec(model)
    oracle = LossGradients(model, data["batches"])
    gradient_seconds = []

    def gradient(params, step):
        start = time.perf_counter()
        out = oracle(params, step)
        gradient_seconds.append(time.perf_counter() - start)
        return out

    path = InterpolatedPath(data["theta_0"], data["theta_t"], spacing("cosine", len(data["batches"])))
    rows, start = [], time.perf_counter()
    extra: dict = {"max_sweeps": max_sweeps}
    resolved = None
    if prior == "default":  # as transfer.tool does: resolved once, before the first step
        from hf_efftrain.transfer.prior import resolve_prior

        resolved = resolve_prior(spec, data["theta_0"], data["target"], stay=None, stay_at="auto", warm_start=None)
        extra |= {"stay": resolved.stay, "stay_at": resolved.at, "warm_start": resolved.warm_start}
    for result in transfer_trajectory(path, data["target"], spec, gradient, method="fgmt", **extra):
        seconds = time.perf_counter() - start
        grads = sum(gradient_seconds)
        digest = hashlib.sha256(json.dumps(spec.to_json(result.permutation)).encode()).hexdigest()[:12]
        rows.append(
            {"step": result.step, "seconds": seconds, "gradient_seconds": grads, "matching_seconds": seconds - grads,
             "sweeps": result.match.sweeps, "objective": result.match.objective, "permutation": digest,
             "rss_mb": psutil.Process().memory_info().rss / 2**20}
        )  # fmt: skip
        if result.step >= steps:
            break
        gradient_seconds.clear()
        start = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    package = str(Path(hf_efftrain.__file__).parent.parent)
    return {"package": package, "steps": rows, "peak_rss_mb": peak, "prior": resolved and resolved.to_dict()}


def run_worker(
    code: Path, file: Path, steps: int, max_sweeps: int = 100, model: str = "minilm", prior: str = "plain"
) -> dict:
    """A fresh process importing ``hf_efftrain`` from ``code`` only (this file is loaded by path)."""
    env = {**os.environ, "PYTHONPATH": str(code), "TOKENIZERS_PARALLELISM": "false"}
    load = (
        "import importlib.util, sys; spec = importlib.util.spec_from_file_location('transfer_speed', sys.argv[1]); "
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); module.main(sys.argv[2:])"
    )
    args = [sys.executable, "-c", load, __file__, "--worker", str(file), "--steps", str(steps)]
    args += ["--sweeps", str(max_sweeps), "--prior", prior] + (["--model", model] if model != "minilm" else [])
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=True, cwd=code)
    return json.loads(done.stdout.strip().splitlines()[-1])


def assignment_seconds(size: int = 1536, seed: int = 0) -> dict[str, float]:
    """``linear_sum_assignment`` on a ``size``-wide matrix: random, and near the identity (a warm start)."""
    from scipy.optimize import linear_sum_assignment

    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((size, size))
    out = {}
    for name, matrix in (("random", noise), ("near_identity", 0.1 * noise + 3 * np.eye(size))):
        start = time.perf_counter()
        linear_sum_assignment(matrix, maximize=True)
        out[f"lsap_seconds_{size}_{name}"] = time.perf_counter() - start
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, default=Path("/tmp/transfer-old"), help="checkout of the old code")
    parser.add_argument("--new", type=Path, default=ROOT, help="checkout of the new code (default: this one)")
    parser.add_argument(
        "--steps", type=int, help="transfer steps timed per run (default: all T of the CLI's default transfer)"
    )
    parser.add_argument("--repeats", type=int, default=2, help="old/new run pairs, interleaved")
    parser.add_argument("--finetune-steps", type=int, default=16)
    parser.add_argument("--name", default="transfer_speed")
    parser.add_argument(
        "--sweeps", type=int, nargs="+", default=[100], help="max_sweeps of the new code runs (first: default)"
    )
    parser.add_argument(
        "--load", default="nothing else running on the machine", help="what else ran on the CPU (for the note)"
    )
    parser.add_argument(
        "--model", choices=("minilm", "smollm2"), default="minilm", help="smollm2: the new code only (no old arm)"
    )
    parser.add_argument("--transfer-steps", type=int, default=10, help="smollm2: T, trajectory points")
    parser.add_argument("--batch-size", type=int, default=8, help="smollm2: 64-token blocks per gradient batch")
    parser.add_argument(
        "--link-only", action="store_true", help="copy transfer_speed.json's figure into transfer.json, time nothing"
    )
    parser.add_argument(
        "--prior",
        choices=("default", "plain"),
        default="default",
        help="the new code's matching prior: default (chosen from the starts, as the CLI does) or plain",
    )
    parser.add_argument(
        "--plain-too", action="store_true", help="also time the new code with plain matching (the old code's prior)"
    )
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.steps is None:
        opts.steps = opts.transfer_steps if opts.model == "smollm2" else _default_transfer_steps()
    if opts.link_only:
        return link_transfer_result()
    if opts.worker is not None:  # one timed run, in its own process (see run_worker)
        timed = worker(opts.worker, opts.steps, max_sweeps=opts.sweeps[0], model_name=opts.model, prior=opts.prior)
        print(json.dumps(timed))
        return
    from benchmarks.harness import run_facts, write_result

    facts = run_facts()
    runs: list[dict] = []
    smollm2 = opts.model == "smollm2"
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "scenario.pt"
        if smollm2:  # in its own process: the fine-tuning's memory is returned before the timed runs start
            import multiprocessing

            args = (file, opts.finetune_steps, opts.transfer_steps, opts.batch_size)
            build = multiprocessing.get_context("spawn").Process(target=build_smollm2_scenario, args=args)
            build.start()
            build.join()
            if build.exitcode != 0:
                raise SystemExit(f"building the SmolLM2 scenario failed (exit code {build.exitcode})")
        else:
            build_scenario(file, opts.finetune_steps)
        for repeat in range(opts.repeats):
            order = [("new", opts.new, opts.sweeps[0], opts.prior)]
            order += [] if smollm2 else [("old", opts.old, 100, "plain")]
            order += [(f"new_max_sweeps_{k}", opts.new, k, opts.prior) for k in opts.sweeps[1:]]
            order += [("new_plain", opts.new, opts.sweeps[0], "plain")] if opts.plain_too else []
            shift = repeat % len(order)  # rotate which goes first: load drifts hit every arm alike
            for code, folder, sweeps, prior in order[shift:] + order[:shift]:
                run = run_worker(folder, file, opts.steps, sweeps, opts.model, prior)
                facts_of_run = {"run_peak_rss_mb": run.get("peak_rss_mb"), "resolved_prior": run.get("prior")}
                for row in run["steps"]:
                    runs.append({"code": code, "repeat": repeat, "max_sweeps": sweeps, "prior": prior, **row,
                                 **facts_of_run})  # fmt: skip
                print(code, repeat, run["steps"], flush=True)
    if smollm2:
        summary, title = summarize_smollm2(runs, opts, facts), "Transfer speed: SmolLM2-135M FGMT step"
    else:
        summary, title = summarize(runs, opts, facts), "Transfer speed: MiniLM-L6 FGMT step, before/after"
    summary["previous_runs"] = _previous_runs(opts.name)
    write_result(opts.name, summary, title, {"runs": runs})
    if opts.name == "transfer_speed":
        link_transfer_result()


def summarize_smollm2(runs: list[dict], opts, facts: dict) -> dict:
    """Seconds per step of the current code on SmolLM2-135M, split into gradients and matching."""
    steps = [r for r in runs if r["code"] == "new"]
    plain = [r for r in runs if r["code"] == "new_plain"]
    resolved, prior_note = timed_prior(runs)
    return {
        "smollm2_seconds_per_step": statistics.mean(r["seconds"] for r in steps),
        **({"smollm2_seconds_per_step_plain": statistics.mean(r["seconds"] for r in plain)} if plain else {}),
        "prior": resolved or "plain",
        "smollm2_matching_seconds_per_step": statistics.mean(r["matching_seconds"] for r in steps),
        "smollm2_gradient_seconds_per_step": statistics.mean(r["gradient_seconds"] for r in steps),
        "smollm2_seconds_per_step_after_the_first": statistics.mean(r["seconds"] for r in steps if r["step"] > 1),
        **_memory(steps, "smollm2_"),
        "code": f"{_commit(opts.new)} (checkout {opts.new})",
        "budget_note": (
            f"SmolLM2-135M (LlamaForCausalLM, 30 layers, hidden 576, 9 query / 3 key-value heads, MLP 1536) on a "
            f"2-core CPU (torch threads 2), {opts.load}; {opts.repeats} run(s) of the first {opts.steps} of "
            f"T = {opts.transfer_steps} FGMT steps, every group matched. A step = 2 gradient computations (1 batch "
            f"of {opts.batch_size} x 64 Wikipedia tokens each, source and transferred point) + matching + building "
            f"the point. Source: {opts.finetune_steps} AdamW steps (lr 1e-4, batch {opts.batch_size}) from the "
            "offline SmolLM2; target: the same model fine-tuned as long on another data order; "
            f"{prior_note}{' (and the same code with plain matching)' if plain else ''}."
        ),
        **facts,
    }


def _memory(steps: list[dict], prefix: str = "") -> dict:
    """Peak RSS of the timed processes, and how much their RSS grew per step after the first (the kept gradient
    pairs grow by one each step); empty for runs recorded before RSS was."""
    peaks = [r["run_peak_rss_mb"] for r in steps if r.get("run_peak_rss_mb")]
    runs: dict[int, list[dict]] = {}
    for r in (r for r in steps if "rss_mb" in r):
        runs.setdefault(r.get("repeat", 0), []).append(r)
    growth = [(rows[-1]["rss_mb"] - rows[0]["rss_mb"]) / (len(rows) - 1) for rows in runs.values() if len(rows) > 1]
    out = {f"{prefix}peak_rss_mb": max(peaks)} if peaks else {}
    return out | ({f"{prefix}rss_growth_mb_per_step": statistics.mean(growth)} if growth else {})


def summarize(runs: list[dict], opts, facts: dict) -> dict:
    def mean(code: str, key: str) -> float:
        return statistics.mean(r[key] for r in runs if r["code"] == code)

    first = {c: {r["permutation"] for r in runs if r["code"] == c and r["step"] == 1} for c in ("old", "new")}
    after, before = mean("new", "seconds"), mean("old", "seconds")
    capped = {}
    for k in opts.sweeps[1:]:
        code = f"new_max_sweeps_{k}"
        capped[f"minilm_seconds_per_step_max_sweeps_{k}"] = mean(code, "seconds")
        capped[f"matching_seconds_per_step_max_sweeps_{k}"] = mean(code, "matching_seconds")
        # matching objective reached, per step, as a share of the uncapped run's (same repeat and step)
        pairs = [
            (r["objective"], u["objective"])
            for r in runs
            if r["code"] == code
            for u in runs
            if u["code"] == "new" and u["repeat"] == r["repeat"] and u["step"] == r["step"]
        ]
        capped[f"objective_ratio_max_sweeps_{k}"] = statistics.mean(a / b for a, b in pairs)
    capped_note = f" (and the new code capped at max_sweeps {opts.sweeps[1:]})" if opts.sweeps[1:] else ""
    plain = {}
    if any(r["code"] == "new_plain" for r in runs):
        capped_note += " (and the new code with plain matching)"
        plain = {
            "minilm_seconds_per_step_plain": mean("new_plain", "seconds"),
            "matching_seconds_per_step_plain": mean("new_plain", "matching_seconds"),
            "speedup_plain": before / mean("new_plain", "seconds"),
        }
    resolved, prior_note = timed_prior(runs)
    return {
        "minilm_seconds_per_step": after,
        "minilm_seconds_per_step_before": before,
        "speedup": before / after,
        **plain,
        "prior": resolved or "plain",
        "matching_seconds_per_step": mean("new", "matching_seconds"),
        "matching_seconds_per_step_before": mean("old", "matching_seconds"),
        "gradient_seconds_per_step": mean("new", "gradient_seconds"),
        "gradient_seconds_per_step_before": mean("old", "gradient_seconds"),
        **_memory([r for r in runs if r["code"] == "new"]),
        **{f"{k}_before": v for k, v in _memory([r for r in runs if r["code"] == "old"]).items()},
        "same_step1_permutation": first["old"] == first["new"] and len(first["new"]) == 1,
        **capped,
        **assignment_seconds(),
        "old_code": f"{_commit(opts.old)} (checkout {opts.old})",
        "new_code": f"{_commit(opts.new)} (checkout {opts.new})",
        "budget_note": (
            f"MiniLM-L6 (6 layers, hidden 384, 12 heads, MLP 1536) on a 2-core CPU (torch threads 2), "
            f"{opts.load}; old and new run "
            f"{opts.repeats} times each{capped_note} in fresh "
            "processes, in a rotating order, over the "
            f"first {opts.steps} of {_default_transfer_steps()} FGMT steps; a step = 2 gradient computations "
            "(source and transferred point, 2 batches of 32 each) + matching + building the point; evaluation "
            f"and saving (CLI) not included. Source: {opts.finetune_steps} AdamW steps (lr 5e-5) of fine-tuning "
            "from a seed-0 head; target: MiniLM-L6 with a seed-1 head. Step 1 starts from the identity in both "
            f"codes (same permutation expected unless the prior moves it); {prior_note}."
        ),
        **facts,
    }


def timed_prior(runs: list[dict]) -> tuple[dict | None, str]:
    """The prior the ``new`` arm's runs resolved (None: plain matching) and a phrase for the budget note.

    :func:`~hf_efftrain.transfer.prior.describe_prior` is imported here, not at the top: this file also runs under
    the old code, which has no prior module."""
    resolved = next((r.get("resolved_prior") for r in runs if r["code"] == "new"), None)
    if not resolved:
        return None, "the new code with plain matching (stay 0), warm-started"
    from hf_efftrain.transfer.prior import describe_prior

    return resolved, f"the new code's prior as the CLI resolves it for these starts: {describe_prior(resolved)}"


def speed_keys() -> dict:
    """``transfer.json``'s ``minilm_seconds_per_step`` from this benchmark's controlled timing (whole default
    transfer, nothing else running), with where it came from; empty before this benchmark has run."""
    from benchmarks.harness import RESULTS_DIR

    path = RESULTS_DIR / "transfer_speed.json"
    if not path.exists():
        return {}
    speed = json.loads(path.read_text())
    source = f"transfer_speed.json: `{speed['command']}`, {speed['date']}, {speed['device']}"
    return {"minilm_seconds_per_step": speed["minilm_seconds_per_step"], "minilm_seconds_per_step_source": source}


def link_transfer_result() -> None:
    """Put :func:`speed_keys` into ``transfer.json`` (its scenario runs' own mean stays beside, under
    ``minilm_seconds_per_step_in_scenario_runs``)."""
    from benchmarks.harness import RESULTS_DIR, write_result
    from benchmarks.transfer import TITLE

    path = RESULTS_DIR / "transfer.json"
    if not path.exists():
        return
    result = json.loads(path.read_text())
    if "minilm_seconds_per_step_in_scenario_runs" not in result and "minilm_seconds_per_step" in result:
        result["minilm_seconds_per_step_in_scenario_runs"] = result["minilm_seconds_per_step"]
    write_result("transfer", {**result, **speed_keys()}, TITLE, tables=result.get("per_pair", {}))


def _previous_runs(name: str) -> list[dict]:
    """The scalar figures of the runs this one replaces (with their command, code and date), newest first: every
    mode's keys (MiniLM and SmolLM2 write different ones)."""
    from benchmarks.harness import RESULTS_DIR

    path = RESULTS_DIR / f"{name}.json"
    if not path.exists():
        return []
    old = json.loads(path.read_text())
    headline = {k: v for k, v in old.items() if isinstance(v, str | int | float)}
    return [headline, *old.get("previous_runs", [])]


def _commit(folder: Path) -> str:
    done = subprocess.run(["git", "-C", str(folder), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


if __name__ == "__main__":
    main()
