"""Benchmark: does LAG (the loss a few steps after growth) predict which growth strategy ends best?

Protocol (sizes in :class:`benchmarks.growth_setup.Study`, saved in the result): a small Llama (hidden 64,
6 layers, a 2048-token BPE vocabulary trained on the training articles) is pre-trained from scratch on the
offline Wikipedia sample until its training loss flattens; it is grown to 12 layers by every stacking operator
(copy-all, interleave, top-k, middle, overlap), by masked growth (MSG), by Net2Net width growth, and, with a
second base pre-trained from another seed, by Deep Fusion and depth passthrough. Every candidate is trained
``--steps`` steps for each of 3 seeds (seed = data order and the initialization of anything fresh; the bases are
shared) and scored on fixed held-out articles at step 0, at several lags k and at the end. Beside them, never
ranked with them: a randomly initialized 12-layer model trained the same way, and gradual stacking (fixed
schedule against adaptive: plateau trigger + LAG) from 3 layers at the same step budget.

The work splits into independent jobs (``benchmarks.growth_jobs``) run by ``--jobs`` single-threaded worker
processes; every finished job leaves a record in the work folder, so rerunning the same command after a crash
only runs what is missing. ``--estimate`` times a few steps of every shape and projects the wall time::

    python -m benchmarks.growth --estimate --jobs 2     # projection only
    python -m benchmarks.growth --jobs 2                # the full study -> benchmarks/results/growth.json
    python -m benchmarks.growth --smoke --no-write      # every job kind at toy sizes, a few minutes
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import multiprocessing
import os
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, replace
from pathlib import Path

from benchmarks.growth_jobs import Job, plan_jobs, read_records, record_path, run_job
from benchmarks.growth_setup import CANDIDATES, Study, prepare_data, smoke
from benchmarks.growth_summary import summarize, tables
from benchmarks.harness import run_facts, stopwatch, write_result

WORK_ROOT = Path(__file__).resolve().parent / ".work"
# relative cost of a job (longest first keeps the two workers' tails short)
WEIGHT = {"deep_fusion(a,b)": 2.2, "net2net_width": 1.2, "base": 2.5, "gradual": 0.9}


def parse(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options: the preset, the parallelism, and a few overrides of the study's sizes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="toy sizes: proves the pipeline end to end")
    parser.add_argument("--estimate", action="store_true", help="time a few steps of each shape; print the projection")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (one single-threaded job each)")
    parser.add_argument("--work-dir", type=Path, default=None, help="records and bases (default benchmarks/.work/)")
    parser.add_argument("--no-write", action="store_true", help="print the result, leave benchmarks/results alone")
    parser.add_argument("--name", default="growth", help="result name under benchmarks/results/")
    parser.add_argument("--candidates", nargs="+", choices=list(CANDIDATES), default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--lag", type=int, default=None)
    parser.add_argument("--lags", type=int, nargs="+", default=None)
    parser.add_argument("--eval-blocks", type=int, default=None)
    parser.add_argument("--base-max-steps", type=int, default=None)
    parser.add_argument("--gradual-seeds", type=int, nargs="+", default=None)
    return parser.parse_args(argv)


def study_from(opts: argparse.Namespace) -> Study:
    """The preset with the command line's overrides."""
    study = smoke(Study()) if opts.smoke else Study()
    overrides = {
        "candidates": tuple(opts.candidates) if opts.candidates else None,
        "seeds": tuple(opts.seeds) if opts.seeds else None,
        "steps": opts.steps,
        "lag": opts.lag,
        "lags": tuple(opts.lags) if opts.lags else None,
        "eval_blocks": opts.eval_blocks,
        "base_max_steps": opts.base_max_steps,
        "gradual_seeds": tuple(opts.gradual_seeds) if opts.gradual_seeds else None,
    }
    study = replace(study, **{k: v for k, v in overrides.items() if v is not None})
    check_study(study)
    return study


def check_study(study: Study) -> None:
    """Settings that would make a figure meaningless, refused before any training."""
    problems = []
    if len(study.seeds) < 2:
        problems.append("seed noise needs at least 2 seeds (3 for the study)")
    if not 1 <= study.lag <= study.steps or any(not 1 <= k <= study.steps for k in study.lags):
        problems.append(f"lags must lie in 1..steps={study.steps}")
    if len(study.names()) < 3:
        problems.append("a rank correlation needs at least 3 growth candidates")
    if problems:
        raise SystemExit("; ".join(problems))


def one_core_per_process() -> None:
    """This process and the workers it starts (they inherit the environment) use one core each."""
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
        os.environ[variable] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _single_thread()


def _single_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _weight(job: Job) -> float:
    return WEIGHT.get(job.name, WEIGHT.get(job.kind, 1.0))


def run_jobs(study: Study, jobs: list[Job], work: Path, workers: int) -> dict[str, str]:
    """Run every job without a record, bases first, at most ``workers`` at once; return failures by job key."""
    done = {job.key for job in jobs if record_path(work, job).is_file()}
    pending = sorted((j for j in jobs if j.key not in done), key=lambda j: (j.kind != "base", -_weight(j)))
    failed: dict[str, str] = {}
    total, started = len(jobs), time.perf_counter()
    context = multiprocessing.get_context("spawn")
    pool = futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_single_thread) if workers > 1 else None
    running: dict[futures.Future, Job] = {}
    while pending or running:
        for job in [j for j in pending if set(j.needs()) <= done][: max(0, workers - len(running))]:
            pending.remove(job)
            running[_submit(pool, study, job, work)] = job
        blocked = [j for j in pending if set(j.needs()) & set(failed)]
        for job in blocked:
            pending.remove(job)
            failed[job.key] = "skipped: a base it needs failed"
        if not running:
            break
        finished, _ = futures.wait(running, return_when=futures.FIRST_COMPLETED)
        for future in finished:
            job, error = running.pop(future), future.exception()
            if error is None:
                done.add(job.key)
            else:
                failed[job.key] = f"{type(error).__name__}: {error}"
            if isinstance(error, BrokenProcessPool):  # a worker died (memory?): stop cleanly
                failed.update({j.key: "not run: the worker pool broke" for j in pending})
                pending.clear()
            status = failed.get(job.key, "done")
            print(f"[{len(done)}/{total}, {time.perf_counter() - started:.0f} s] {job.key}: {status}", flush=True)
    if pool is not None:
        pool.shutdown()
    return failed


def _submit(pool, study: Study, job: Job, work: Path) -> futures.Future:
    if pool is not None:
        return pool.submit(run_job, study, job, work)
    future: futures.Future = futures.Future()
    try:
        future.set_result(run_job(study, job, work))
    except Exception as err:  # a failed job must not stop the others; it is reported at the end
        future.set_exception(err)
    return future


def why(study: Study) -> str:
    """Why the study has the sizes it has."""
    return (
        f"About {len(plan_jobs(study))} runs (every candidate x {len(study.seeds)} seeds, scratch, the bases, the "
        f"gradual arms) must fit in about an hour on two single-threaded cores, so the model is a {study.hidden}-wide "
        f"Llama; {study.base_layers} -> {study.target_layers} layers is the smallest doubling at which copy-all, "
        "interleave, top-k, middle and overlap are five different layer plans; a vocabulary of our own keeps the LM "
        "head from dominating the compute of so narrow a model; the held-out blocks are spread evenly over the "
        "held-out articles, and every candidate is scored on the same tokens."
    )


def sizes(study: Study, result: dict) -> dict:
    """The shapes and token counts behind every figure, and why they were chosen."""
    return {
        "model": "LlamaForCausalLM (RMSNorm, SwiGLU MLP, RoPE, tied embeddings), causal LM",
        "hidden": study.hidden,
        "heads": study.heads,
        "head_dim": study.hidden // study.heads,
        "mlp": study.ffn,
        "base_layers": study.base_layers,
        "base_params": result["bases"]["a"]["params"],
        "grown_layers": study.target_layers,
        "grown_params": {name: c["params"] for name, c in result["candidates"].items()},
        "scratch_params": result["scratch"]["params"],
        "tokens_per_step": study.batch * study.block,
        **result["data"],
        "why": why(study),
    }


def budget_note(study: Study, result: dict, seconds: float, workers: int, cpu_per_run: float, cpu_total: float) -> str:
    """What the figures rest on, in words (every number measured in this run)."""
    data, base = result["data"], result["bases"]["a"]
    flat = "its training loss flattened" if base["stopped_by_plateau"] else "it hit the step cap before flattening"
    arms = result["gradual_stacking"]["arms"]
    metric = ", ".join(arms["adaptive"]["lag_metric"]) or "nothing"
    return (
        f"This invocation took {seconds / 60:.1f} min wall on {workers} single-threaded worker(s) (jobs finished by an "
        f"earlier invocation are not counted); all jobs' records hold {cpu_total / 60:.0f} CPU min, whichever "
        f"invocation ran them; a {study.target_layers}-layer run of {study.steps} steps took "
        f"{cpu_per_run:.0f} CPU s. Base: {study.base_layers} layers, {base['steps']} steps of {study.batch} x "
        f"{study.block} tokens ({flat}; held-out loss {base['final_heldout_loss']:.3f}). Every candidate: "
        f"{study.steps} steps after growth, {len(study.seeds)} seeds (data order and fresh initializations; the "
        f"bases are shared), LAG at step {study.lag}. Held-out loss on {data['eval_tokens']} tokens from "
        f"{data['eval_articles_covered']} of {data['held_out_articles']} held-out articles; {data['train_tokens']} "
        "training tokens. Seed means rank the candidates; scratch is beside them, never ranked. Growth against "
        "scratch counts steps after growth (steps_to_scratch_final_ratio); *_with_base adds the base's steps or "
        f"FLOPs. Gradual stacking: the adaptive arm's LAG ranked by {metric}; the stages drew "
        f"{arms['adaptive']['stage_distinct_batch_fraction']:.0%} (adaptive) and "
        f"{arms['fixed']['stage_distinct_batch_fraction']:.0%} (fixed) distinct batches (below 100% = stages "
        "replayed one data order)."
    )


def write(study: Study, result: dict, name: str, no_write: bool) -> None:
    """Write the JSON + Markdown result (or only print it)."""
    title = f"LAG growth study (Llama {study.base_layers} -> {study.target_layers} layers, causal LM)"
    if no_write:
        import json

        print(json.dumps({k: v for k, v in result.items() if k not in ("candidates", "scratch")}, indent=2))
        return
    write_result(name, result, title, tables(result))


def assemble(study: Study, records: dict, data_sizes: dict, seconds: float, workers: int, work: Path) -> dict:
    """The result file: the statistics, the sizes, the budget and where the run happened."""
    result = summarize(study, records, data_sizes)
    scratch_cpu = [r["cpu_seconds"] for r in records.values() if r["job"].startswith("scratch-")]
    cpu_total = sum(r["cpu_seconds"] for r in records.values())
    result.update(
        budget={"steps": study.steps, "lag_steps": study.lag, "wall_seconds": round(seconds, 1),
                "cpu_seconds": round(cpu_total, 1), "jobs": workers},
        study=asdict(study),
        targets_met=result["targets"],  # the name hf_efftrain/docs_gen reads
        work_dir=str(work),
        sizes=sizes(study, result),
        budget_note=budget_note(study, result, seconds, workers, sum(scratch_cpu) / len(scratch_cpu), cpu_total),
    )  # fmt: skip
    return {**result, **run_facts()}


def main(argv: list[str] | None = None) -> None:
    """Prepare the data once, run the missing jobs, then summarize every record into the result."""
    opts = parse(argv)
    study = study_from(opts)
    work = opts.work_dir or WORK_ROOT / f"growth-{study.key()}"
    one_core_per_process()
    data_sizes = prepare_data(study, work)
    if opts.estimate:
        from benchmarks.growth_estimate import estimate

        return estimate(study, work, opts.jobs)
    jobs = plan_jobs(study)
    with stopwatch() as clock:
        failed = run_jobs(study, jobs, work, opts.jobs)
    if failed:
        lines = "\n".join(f"  {key}: {why}" for key, why in failed.items())
        raise SystemExit(f"{len(failed)} job(s) failed (logs in {work / 'logs'}); rerun to retry them:\n{lines}")
    result = assemble(study, read_records(work, jobs), data_sizes, clock["seconds"], opts.jobs, work)
    write(study, result, opts.name, opts.no_write)


if __name__ == "__main__":
    main()
