"""How long the growth study will take: time a few real training steps and one evaluation of every model shape,
then schedule the protocol's jobs on the workers.

Times are CPU seconds of this single-threaded process (what a step costs on a core of its own, even while
other work shares the machine). Example::

    python -m benchmarks.growth --estimate --jobs 2
"""

from __future__ import annotations

import heapq
import time

from transformers import TrainerCallback

from benchmarks.growth_jobs import Job, plan_jobs, stacking_config, study_trainer, training_args
from benchmarks.growth_setup import CANDIDATES, Study, fresh_model

WARM, MEASURED = 2, 6
JOB_OVERHEAD = 6.0  # CPU seconds to start a job: load the data, build the model and the Trainer (measured ~4-6)


class _StepClock(TrainerCallback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.process_time())


def time_shape(study: Study, model, work) -> tuple[float, float]:
    """CPU seconds per training step (after a warm-up) and per evaluation of the held-out set."""
    clock = _StepClock()
    args = training_args(study, 0, work / "runs" / "estimate", max_steps=WARM + MEASURED)
    trainer = study_trainer(model, args, work, [clock])
    trainer.train()
    start = time.process_time()
    trainer.evaluate()
    per_eval = time.process_time() - start
    return (clock.times[-1] - clock.times[WARM - 1]) / MEASURED, per_eval


def shapes(study: Study) -> dict[str, object]:
    """One model of every shape the study trains (weights random: only the cost matters)."""
    bases = {"a": fresh_model(study, study.base_layers, 0), "b": fresh_model(study, study.base_layers, 1)}
    return {
        "base": bases["a"],
        "deep": fresh_model(study, study.target_layers, 0),
        "net2net_width": CANDIDATES["net2net_width"](study, bases, 0),
        "deep_fusion(a,b)": CANDIDATES["deep_fusion(a,b)"](study, bases, 0),
    }


def job_cost(study: Study, job: Job, cost: dict[str, tuple[float, float]]) -> float:
    """Projected CPU seconds of ``job``."""
    step, per_eval = cost.get(job.name, cost["deep"])
    if job.kind == "base":
        step, per_eval = cost["base"]
        return study.base_max_steps * step + study.base_max_steps / study.base_eval_every * per_eval + JOB_OVERHEAD
    if job.kind in ("candidate", "scratch"):
        return study.steps * step + (len(study.eval_steps()) + 1) * per_eval + JOB_OVERHEAD
    return gradual_cost(study, job.name, cost)


def _at_depth(cost: dict[str, tuple[float, float]], study: Study, layers: int) -> tuple[float, float]:
    """Step and evaluation cost at ``layers`` layers, interpolated between the base and the deep shape."""
    (s0, e0), (s1, e1) = cost["base"], cost["deep"]
    share = (layers - study.base_layers) / (study.target_layers - study.base_layers)
    return s0 + share * (s1 - s0), e0 + share * (e1 - e0)


def gradual_cost(study: Study, arm: str, cost: dict[str, tuple[float, float]]) -> float:
    """Every stage at its cap, and (adaptive) every LAG probe with four held-out evaluations."""
    config = stacking_config(study, arm)
    depths = range(study.gradual_start, study.target_layers + 1, study.gradual_grow_by)
    total = JOB_OVERHEAD + sum(config.stage_steps * _at_depth(cost, study, d)[0] for d in depths)
    if config.lag_steps:
        for depth in list(depths)[1:]:
            step, per_eval = _at_depth(cost, study, depth)
            total += len(config.candidates) * (config.lag_steps * step + 4 * per_eval + JOB_OVERHEAD)
    return total


def makespan(jobs: list[Job], costs: dict[str, float], workers: int) -> float:
    """Wall seconds of the greedy schedule ``run_jobs`` follows (bases first, then the longest ready job)."""
    free = [(0.0, w) for w in range(workers)]
    finish: dict[str, float] = {}
    order = sorted(jobs, key=lambda j: (j.kind != "base", -costs[j.key]))
    for job in order:
        at, worker = heapq.heappop(free)
        start = max([at, *(finish[k] for k in job.needs())])
        finish[job.key] = start + costs[job.key]
        heapq.heappush(free, (finish[job.key], worker))
    return max(finish.values())


def estimate(study: Study, work, workers: int) -> None:
    """Print the per-shape costs, the per-kind CPU totals and the projected wall time on ``workers`` workers."""
    cost = {name: time_shape(study, model, work) for name, model in shapes(study).items()}
    for name, (step, per_eval) in cost.items():
        print(f"{name:>18}: {step:.3f} CPU s/step, {per_eval:.2f} CPU s/evaluation ({study.eval_blocks} blocks)")
    jobs = plan_jobs(study)
    costs = {job.key: job_cost(study, job, cost) for job in jobs}
    for kind in ("base", "candidate", "scratch", "gradual"):
        share = sum(c for j, c in zip(jobs, costs.values(), strict=True) if j.kind == kind)
        print(f"{kind:>18}: {share / 60:.1f} CPU min")
    print(f"total {sum(costs.values()) / 60:.1f} CPU min over {len(jobs)} jobs; projected wall time:")
    for n in sorted({1, 2, workers}):
        print(f"  {n} worker(s): {makespan(jobs, costs, n) / 60:.1f} min")
