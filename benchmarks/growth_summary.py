"""The growth study's statistics: what the job records say about LAG, growth against scratch, gradual stacking.

Rankings use seed-mean held-out losses of the growth candidates only; scratch is reported beside them, never
ranked with them (it is not a growth strategy, and its early losses would inflate any rank correlation).
Example::

    result = summarize(study, records, data_sizes)
    result["spearman_lag_vs_final"], result["targets"]
"""

from __future__ import annotations

import math
import statistics
import warnings
from typing import Any

from scipy.stats import spearmanr

from benchmarks.growth_jobs import BASE_SEEDS, GRADUAL_ARMS, Job
from benchmarks.growth_setup import DESCRIPTIONS, TWO_BASES, WIDER, Study

Curve = dict[int, float]


def curve(losses: dict) -> Curve:
    """A held-out curve with integer steps (JSON keeps them as strings)."""
    return {int(step): float(loss) for step, loss in losses.items()}


def mean_curve(per_seed: dict[int, Curve]) -> Curve:
    """Seed-mean loss at every step all seeds measured."""
    steps = set.intersection(*(set(c) for c in per_seed.values()))
    return {s: statistics.fmean(c[s] for c in per_seed.values()) for s in sorted(steps)}


def std(values: list[float]) -> float:
    """Sample standard deviation (0 for a single value)."""
    return statistics.stdev(values) if len(values) > 1 else 0.0


def rank_correlation(xs: list[float], ys: list[float]) -> tuple[float | None, float | None]:
    """Spearman's rho and its p-value; ``None`` when undefined (a constant input)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant input is reported as None below
        rho, p = spearmanr(xs, ys)
    return (None, None) if not math.isfinite(rho) else (float(rho), float(p))


def steps_to_reach(losses: Curve, target: float) -> int | None:
    """First measured step at which the loss is at or below ``target``."""
    return next((step for step in sorted(losses) if losses[step] <= target), None)


def _runs(records: dict[str, dict], kind: str, name: str, seeds) -> dict[int, dict]:
    return {seed: records[Job(kind, name, seed).key] for seed in seeds}


def candidate_table(study: Study, records: dict[str, dict]) -> dict[str, dict[int, Curve]]:
    """Candidate name -> seed -> held-out curve."""
    return {
        name: {seed: curve(r["losses"]) for seed, r in _runs(records, "candidate", name, study.seeds).items()}
        for name in study.names()
    }


def ranking_at(means: dict[str, Curve], step: int, final: int) -> dict[str, Any]:
    """How well the seed-mean loss at ``step`` ranks the candidates' seed-mean final losses."""
    names = list(means)
    at = {n: means[n][step] for n in names}
    end = {n: means[n][final] for n in names}
    rho, p = rank_correlation([at[n] for n in names], [end[n] for n in names])
    pick, best = min(at, key=at.get), min(end, key=end.get)
    return {
        "k": step,
        "fraction_of_run": step / final,
        "spearman": rho,
        "p_value": p,
        "pick": pick,
        "pick_final_gap_nats": end[pick] - end[best],
        "pick_final_gap": (end[pick] - end[best]) / end[best],
    }


def depth_only(means: dict[str, Curve], study: Study) -> dict[str, Any] | None:
    """The same ranking over the layer-stacking candidates alone (same shape, finals close together): does LAG
    still order them when the width-growing ones, best at every step, are left out?"""
    stacked = {name: curve for name, curve in means.items() if name not in WIDER}
    if len(stacked) < 3:
        return None
    curve = [ranking_at(stacked, k, study.steps) for k in measured_lags(study)]
    return {"candidates": sorted(stacked), "spearman_vs_k": curve}


def measured_lags(study: Study) -> list[int]:
    """Step 0 and every lag k at which the candidates are scored."""
    return [0, *sorted({*study.lags, study.lag})]


def per_seed_lag_spearman(table: dict[str, dict[int, Curve]], means: dict[str, Curve], study: Study) -> dict:
    """LAG as one would run it (each candidate once, one seed) against the seed-mean final ranking."""
    names = list(table)
    finals = [means[n][study.steps] for n in names]
    return {str(seed): rank_correlation([table[n][seed][study.lag] for n in names], finals)[0] for seed in study.seeds}


def candidates_section(study: Study, records: dict[str, dict], table: dict[str, dict[int, Curve]]) -> dict:
    """Per candidate: seed means at step 0, at every lag and at the end, the seed std, and the per-seed curves."""
    out = {}
    for name, per_seed in table.items():
        means = mean_curve(per_seed)
        first = records[Job("candidate", name, study.seeds[0]).key]
        finals = [c[study.steps] for c in per_seed.values()]
        out[name] = {
            "description": DESCRIPTIONS[name],
            "params": first["params"],
            "layers": first["layers"],
            "loss_step_0": means[0],
            "loss_at_lags": {str(k): means[k] for k in sorted({*study.lags, study.lag})},
            "final_heldout_loss": means[study.steps],
            "final_std": std(finals),
            "per_seed": {
                str(s): {
                    "loss_step_0": c[0],
                    "loss_at_lag": c[study.lag],
                    "final_heldout_loss": c[study.steps],
                    "heldout_curve": {str(k): v for k, v in c.items()},
                }
                for s, c in per_seed.items()
            },
            "mean_curve": {str(k): v for k, v in means.items()},
        }
    return out


def scratch_section(study: Study, records: dict[str, dict]) -> dict:
    """The scratch model of the grown shape: per-seed curves and the seed mean (reported beside, not ranked)."""
    runs = _runs(records, "scratch", "scratch", study.seeds)
    per_seed = {seed: curve(r["losses"]) for seed, r in runs.items()}
    means = mean_curve(per_seed)
    return {
        "params": runs[study.seeds[0]]["params"],
        "layers": runs[study.seeds[0]]["layers"],
        "loss_step_0": means[0],
        "final_heldout_loss": means[study.steps],
        "final_std": std([c[study.steps] for c in per_seed.values()]),
        "per_seed": {
            str(s): {"final_heldout_loss": c[study.steps], "heldout_curve": {str(k): v for k, v in c.items()}}
            for s, c in per_seed.items()
        },
        "mean_curve": {str(k): v for k, v in means.items()},
        "flops_per_step": runs[study.seeds[0]]["flops_per_step"],
    }


def base_section(study: Study, records: dict[str, dict]) -> dict:
    """Each pre-trained base: steps, whether its loss flattened, held-out curve."""
    out = {}
    for letter, seed in BASE_SEEDS.items():
        key = Job("base", letter, seed).key
        if key not in records:
            continue
        r = records[key]
        held = curve(r["heldout_curve"])
        train = r["train_losses"]
        quarter = max(1, len(train) // 4)
        out[letter] = {
            "seed": seed,
            "steps": r["steps"],
            "stopped_by_plateau": r["stopped_by_plateau"],
            "flops": r["flops"],
            "final_heldout_loss": held[max(held)],
            "heldout_curve": {str(k): v for k, v in held.items()},
            "train_loss_last_quarter_relative_drop": _relative_drop(train[-2 * quarter : -quarter], train[-quarter:]),
            "cpu_seconds": r["cpu_seconds"],
            "params": r["params"],
        }
    return out


def _relative_drop(before: list[float], after: list[float]) -> float | None:
    if not before or not after:
        return None
    return (statistics.fmean(before) - statistics.fmean(after)) / statistics.fmean(before)


def growth_vs_scratch(study: Study, cands: dict, scratch: dict, bases: dict, records: dict[str, dict]) -> dict:
    """Steps for the best grown model to reach scratch's final loss, alone and counting the base's cost."""
    best = min(cands, key=lambda n: cands[n]["final_heldout_loss"])
    means = curve(cands[best]["mean_curve"])
    reach = steps_to_reach(means, scratch["final_heldout_loss"])
    first = records[Job("candidate", best, study.seeds[0]).key]
    letters = ("a", "b") if best in TWO_BASES else ("a",)
    base_steps = sum(bases[x]["steps"] for x in letters)
    base_flops = sum(bases[x]["flops"] for x in letters)
    scratch_flops = study.steps * scratch["flops_per_step"]
    return {
        "best_grown": best,
        "steps_to_scratch_final": reach,
        "steps_to_scratch_final_ratio": None if reach is None else reach / study.steps,
        "steps_to_scratch_final_ratio_with_base": None if reach is None else (base_steps + reach) / study.steps,
        "flops_to_scratch_final_ratio_with_base": None
        if reach is None
        else (base_flops + reach * first["flops_per_step"]) / scratch_flops,
        "measured_at_steps": sorted(means),
    }


def gradual_section(study: Study, records: dict[str, dict], scratch: dict) -> dict:
    """Adaptive against fixed gradual stacking and against scratch, all at the run's step budget."""
    scratch_flops = study.steps * scratch["flops_per_step"]
    arms = {}
    for arm in GRADUAL_ARMS:
        runs = _runs(records, "gradual", arm, study.gradual_seeds)
        finals = [r["final_heldout_loss"] for r in runs.values()]
        arms[arm] = {
            "final_heldout_loss": statistics.fmean(finals),
            "final_std": std(finals),
            "minus_scratch_final": statistics.fmean(finals) - scratch["final_heldout_loss"],
            "flops_fraction_of_scratch": statistics.fmean(r["flops"]["main_line"] for r in runs.values())
            / scratch_flops,
            "flops_fraction_with_lag_probes": statistics.fmean(sum(r["flops"].values()) for r in runs.values())
            / scratch_flops,
            "lag_metric": sorted({s["lag_metric"] for r in runs.values() for s in r["stages"] if s["lag_metric"]}),
            "stage_distinct_batch_fraction": statistics.fmean(
                r["stage_batches_distinct"] / max(1, r["stage_batches_drawn"]) for r in runs.values()
            ),
            "per_seed": {str(s): r for s, r in runs.items()},
        }
    return {
        "budget_steps": study.steps,
        "scratch_final_heldout_loss": scratch["final_heldout_loss"],
        "scratch_final_std": scratch["final_std"],
        "arms": arms,
        "adaptive_minus_fixed_final": arms["adaptive"]["final_heldout_loss"] - arms["fixed"]["final_heldout_loss"],
    }


def summarize(study: Study, records: dict[str, dict], data_sizes: dict) -> dict[str, Any]:
    """Every figure of the result, computed from the job records."""
    table = candidate_table(study, records)
    means = {name: mean_curve(per_seed) for name, per_seed in table.items()}
    cands = candidates_section(study, records, table)
    scratch = scratch_section(study, records)
    bases = base_section(study, records)
    headline, init = ranking_at(means, study.lag, study.steps), ranking_at(means, 0, study.steps)
    spread = max(c["final_heldout_loss"] for c in cands.values()) - min(c["final_heldout_loss"] for c in cands.values())
    seed_std = statistics.fmean(c["final_std"] for c in cands.values())
    vs_scratch = growth_vs_scratch(study, cands, scratch, bases, records)
    result = {
        "seeds": list(study.seeds),
        "candidates": cands,
        "scratch": scratch,
        "scratch_in_ranking": False,
        "spearman_lag_vs_final": headline["spearman"],
        "spearman_lag_p_value": headline["p_value"],
        "spearman_init_vs_final": init["spearman"],
        "spearman_init_p_value": init["p_value"],
        "spearman_lag_vs_final_single_seed": per_seed_lag_spearman(table, means, study),
        "lag_steps": study.lag,
        "lag_cost_fraction": study.lag / study.steps,
        "lag_selection_cost_fraction": len(cands) * study.lag / study.steps,
        "final_spread": spread,
        "seed_std": seed_std,
        "final_spread_over_seed_std": spread / seed_std if seed_std > 0 else None,
        "steps": study.steps,
        "scratch_steps": study.steps,
        "steps_to_scratch_final_ratio": vs_scratch["steps_to_scratch_final_ratio"],
        "growth_vs_scratch": vs_scratch,
        "lag_pick": headline["pick"],
        "init_pick": init["pick"],
        "best_final": min(cands, key=lambda n: cands[n]["final_heldout_loss"]),
        "lag_pick_final_gap": headline["pick_final_gap"],
        "lag_pick_final_gap_nats": headline["pick_final_gap_nats"],
        "init_pick_final_gap": init["pick_final_gap"],
        "init_pick_final_gap_nats": init["pick_final_gap_nats"],
        "spearman_vs_k": [ranking_at(means, k, study.steps) for k in measured_lags(study)],
        "depth_only": depth_only(means, study),
        "gradual_stacking": gradual_section(study, records, scratch),
        "bases": bases,
        "data": data_sizes,
    }
    result["targets"] = targets(result)
    return result


def targets(result: dict) -> dict[str, bool]:
    """The issue's goals, as measured."""
    lag, init = result["spearman_lag_vs_final"], result["spearman_init_vs_final"]
    ratio, spread = result["steps_to_scratch_final_ratio"], result["final_spread_over_seed_std"]
    return {
        "spearman_lag_ge_0.8_and_above_init": lag is not None and lag >= 0.8 and (init is None or lag > init),
        "lag_cost_fraction_le_0.1": result["lag_cost_fraction"] <= 0.1,
        "final_spread_ge_2_seed_std": spread is not None and spread >= 2,
        "grown_reaches_scratch_final_in_le_0.5_of_steps": ratio is not None and ratio <= 0.5,
    }


def tables(result: dict) -> dict[str, list[dict]]:
    """The Markdown tables of the result file."""
    lag, steps = result["lag_steps"], result["steps"]
    rows = [
        {
            "candidate": n,
            "step 0": c["loss_step_0"],
            f"step {lag} (LAG)": c["loss_at_lags"][str(lag)],
            f"final (step {steps})": c["final_heldout_loss"],
            "final std": c["final_std"],
            "finals per seed": [s["final_heldout_loss"] for s in c["per_seed"].values()],
        }
        for n, c in sorted(result["candidates"].items(), key=lambda item: item[1]["final_heldout_loss"])
    ]
    s = result["scratch"]
    scratch = [
        {
            "model": "scratch",
            "step 0": s["loss_step_0"],
            f"final (step {steps})": s["final_heldout_loss"],
            "final std": s["final_std"],
        }
    ]
    curve_rows = [
        {
            "lag k": r["k"],
            "% of run": 100 * r["fraction_of_run"],
            "Spearman vs final": r["spearman"],
            "p": r["p_value"],
            "pick": r["pick"],
            "pick's final - best final (nats)": r["pick_final_gap_nats"],
        }
        for r in result["spearman_vs_k"]
    ]
    depth = result["depth_only"] or {"spearman_vs_k": []}
    depth_rows = [
        {"lag k": r["k"], "Spearman vs final": r["spearman"], "p": r["p_value"], "pick": r["pick"]}
        for r in depth["spearman_vs_k"]
    ]
    gradual = result["gradual_stacking"]
    arms = [
        {
            "arm": a,
            "final": g["final_heldout_loss"],
            "std": g["final_std"],
            "minus scratch": g["minus_scratch_final"],
            "FLOPs / scratch": g["flops_fraction_of_scratch"],
            "with LAG probes": g["flops_fraction_with_lag_probes"],
            "LAG metric": ", ".join(g["lag_metric"]) or "-",
        }
        for a, g in gradual["arms"].items()
    ]
    return {
        "Growth candidates (seed means; ranked by final loss)": rows,
        "Scratch (same shape, same run; not ranked)": scratch,
        "Spearman of the loss at step k against the final loss": curve_rows,
        "The same over the layer-stacking candidates only (width growth left out)": depth_rows,
        f"Gradual stacking at the same {gradual['budget_steps']}-step budget": arms,
    }
