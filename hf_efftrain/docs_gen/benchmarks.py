"""Benchmark tables generated from ``benchmarks/results/<name>.json``, so the docs show the measured figures.

Each result has its own contract keys, so each has a small renderer that picks the key figures; all of them end
with the provenance of the run (command, device, date, budget note). A missing key, a missing or corrupt file
fails the docs build with the file and the key named. Example::

    print(benchmark_tables("mat", Path("benchmarks/results")))
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hf_efftrain.docs_gen.markdown import cell, code, table
from hf_efftrain.errors import DocsGenerationError

_MISSING = object()


class Result:
    """A loaded result file whose keys are read by dotted path (``"arms.0.mat_accuracy"``) with clear errors."""

    def __init__(self, name: str, path: Path, data: dict[str, Any]) -> None:
        self.name, self.path, self.data = name, path, data

    def get(self, dotted: str) -> Any:
        """The value at a dotted path (``arms.0.accuracy``); a missing key says which benchmark to re-run."""
        value: Any = self.data
        for key in dotted.split("."):
            if isinstance(value, list) and key.isdigit() and int(key) < len(value):
                value = value[int(key)]
            elif isinstance(value, dict) and key in value:
                value = value[key]
            else:
                raise DocsGenerationError(
                    f"benchmark result {self.path} has no key {dotted!r}, which the docs table needs: "
                    f"re-run `python -m benchmarks.{self.name}` or update hf_efftrain/docs_gen/benchmarks.py"
                )
        return value


def load_result(name: str, results_dir: Path) -> Result:
    """Read ``results_dir/<name>.json``; a missing, unreadable or non-object file raises DocsGenerationError."""
    path = Path(results_dir) / f"{name}.json"
    if not path.is_file():
        raise DocsGenerationError(f"benchmark result {path} is missing: run `python -m benchmarks.{name}` first")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DocsGenerationError(f"benchmark result {path} is corrupt ({err}): restore it from git or re-run") from err
    if not isinstance(data, dict):
        raise DocsGenerationError(f"benchmark result {path} must hold a JSON object, not {type(data).__name__}")
    return Result(name, path, data)


def benchmark_tables(name: str, results_dir: Path) -> str:
    """The Markdown tables of result ``name`` followed by its provenance (the ``<!-- benchmark: name -->`` marker)."""
    if name not in RENDERERS:
        raise DocsGenerationError(f"no benchmark table is defined for {name!r}; known: {', '.join(sorted(RENDERERS))}")
    result = load_result(name, results_dir)
    return RENDERERS[name](result) + "\n\n" + provenance(result)


def provenance(result: Result) -> str:
    """Where the figures come from: the file, the exact command, device, date and budget note if any."""
    lines = [
        f"*Generated from `benchmarks/results/{result.name}.json`* — measured {result.get('date')} on "
        f"{result.get('device')}, with:",
        "",
        "```bash",
        result.get("command"),
        "```",
    ]
    if "budget_note" in result.data:
        lines += ["", f"**Budget note (from the result file).** {result.get('budget_note')}"]
    return "\n".join(lines)


def fmt(value: Any, digits: int = 3, missing: str = "–") -> str:
    """A number rounded for reading (``None`` = not reached/not measured, shown as ``missing``)."""
    if value is None:
        return missing
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) >= 10**-digits or value == 0 else f"{value:.2e}"
    return cell(value)


def pct(value: Any, digits: int = 2) -> str:
    """A fraction as a percentage (``0.7533`` → ``75.33%``)."""
    return "–" if value is None else f"{100 * value:.{digits}f}%"


def targets_table(result: Result, key: str) -> str:
    """The result's own verdict on its issue's targets (a dict of booleans)."""
    rows = [[code(target), "**yes**" if met else "**no**"] for target, met in result.get(key).items()]
    return table(["target", "met"], rows)


def _baseline(r: Result) -> str:
    per_seed = ", ".join(f"{fmt(s['accuracy'], 4)} (seed {s['seed']})" for s in r.get("per_seed"))
    row = [r.get("steps"), f"{fmt(r.get('accuracy'))} ± {fmt(r.get('accuracy_std'))}", per_seed]
    row += [fmt(r.get("seconds_per_step"), 2), cell(r.get("eval_split"))]
    return table(["steps", "accuracy (mean ± std)", "per seed", "seconds per step", "evaluated on"], [row])


_NOT_EVERY_SEED = "not reached in every seed"


def _mat(r: Result) -> str:
    rows = []
    for i, arm in enumerate(r.get("arms")):
        seeds = r.get(f"arms.{i}.per_seed")
        per_seed = ", ".join(
            fmt(v, 2) + ("" if reached else " (not reached)")
            for v, reached in zip(
                seeds["time_to_baseline_accuracy_ratio"], seeds["time_to_baseline_accuracy_reached"], strict=True
            )
        )
        rows.append(
            [
                code(arm["arm"]) + (" (default)" if arm["arm"] == r.get("default_arm") else ""),
                pct(r.get(f"arms.{i}.baseline_accuracy")),
                pct(r.get(f"arms.{i}.mat_accuracy")),
                f"{fmt(r.get(f'arms.{i}.time_to_baseline_accuracy_ratio'), 2)} ({per_seed})",
                fmt(r.get(f"arms.{i}.backward_flops_ratio")),
                fmt(r.get(f"arms.{i}.cpu_time_ratio")),
                pct(r.get(f"arms.{i}.measurement_overhead")),
                pct(r.get(f"arms.{i}.active_head_fraction"), 1),
            ]
        )
    headers = ["arm", "baseline acc.", "MAT acc.", "time to baseline acc. (ratio; per seed)", "backward FLOPs ratio"]
    headers += ["CPU time ratio", "measurement overhead", "active heads"]
    return table(headers, rows) + "\n\nGoals (default arm):\n\n" + targets_table(r, "goals")


def _growth(r: Result) -> str:
    lag, steps = r.get("lag_steps"), r.get("steps")
    candidates = r.get("candidates")
    order = sorted(candidates, key=lambda n: r.get(f"candidates.{n}.final_heldout_loss"))
    rows = [_growth_row(code(n), r.get(f"candidates.{n}"), r.get(f"candidates.{n}.loss_at_lags.{lag}")) for n in order]
    rows.append(_growth_row("scratch (not ranked)", r.get("scratch"), None))
    headers = ["candidate", "held-out loss, step 0", f"step {lag} (LAG)", f"step {steps} (final, mean)", "per seed"]
    stacked = {k["k"]: k["spearman"] for k in (r.data.get("depth_only") or {}).get("spearman_vs_k", [])}
    curve = [
        [k["k"], pct(k["fraction_of_run"], 1), fmt(k["spearman"]), fmt(k["p_value"]), code(k["pick"])]
        + [fmt(k["pick_final_gap_nats"]), fmt(stacked.get(k["k"]))]
        for k in r.get("spearman_vs_k")
    ]
    curve_headers = ["lag k", "of the run", "Spearman vs final", "p", "pick", "pick − best final (nats)"]
    curve_table = table([*curve_headers, "Spearman, layer stacking only"], curve)
    gradual = [
        [code(arm), fmt(g["final_heldout_loss"]), fmt(g["final_std"]), fmt(g["minus_scratch_final"])]
        + [fmt(g["flops_fraction_of_scratch"]), fmt(g["flops_fraction_with_lag_probes"])]
        for arm, g in r.get("gradual_stacking.arms").items()
    ]
    gradual_headers = ["gradual stacking", "final", "std", "− scratch", "FLOPs ÷ scratch", "with LAG probes"]
    keys = ["lag_pick", "best_final", "lag_pick_final_gap", "spearman_lag_vs_final", "spearman_init_vs_final"]
    keys += ["lag_cost_fraction", "final_spread_over_seed_std", "steps_to_scratch_final_ratio"]
    figures = table(["figure", "measured"], [[code(k), _growth_figure(r, k)] for k in keys])
    parts = [table(headers, rows), "Spearman against the lag:", curve_table, table(gradual_headers, gradual), figures]
    return "\n\n".join([*parts, *_growth_long_scratch(r), "Targets:", targets_table(r, "targets")])


def _growth_long_scratch(r: Result) -> list[str]:
    """The grown models against scratch trained as long as base + growth (when that run exists)."""
    long = r.data.get("growth_vs_scratch_long")
    if not long:
        return []
    finals = ", ".join(fmt(v) for v in long["scratch_per_seed_final"].values())
    intro = (
        f"Against scratch trained {long['scratch_steps']} steps (as long as base a plus the run after growth; "
        f"final {fmt(long['scratch_final_heldout_loss'])}, per seed {finals}; `{long['command']}`, measured "
        f"{long.get('date', '–')} on {long.get('device', '–')}):"
    )
    order = sorted(long["candidates"], key=lambda n: long["candidates"][n]["final_heldout_loss"])
    rows = [
        [
            code(n),
            fmt(c["final_heldout_loss"]),
            fmt(c["minus_scratch_long_final"]),
            fmt(c["steps_after_growth_to_reach"]),
        ]
        + [fmt(c["steps_with_base_ratio"]), fmt(c["flops_with_base_ratio"])]
        for n, c in ((n, long["candidates"][n]) for n in order)
    ]
    headers = ["grown model", "final", "− scratch final", "steps after growth to reach it"]
    return [intro, table([*headers, "steps with base(s) ÷ scratch's", "FLOPs with base(s) ÷ scratch's"], rows)]


def _growth_horizon(r: Result) -> str:
    bases = r.get("bases")
    steps = ", ".join(f"{letter} {fmt(base['steps'])}" for letter, base in bases.items())
    finals = ", ".join(fmt(v) for v in r.get("scratch_per_seed_final").values())
    figures = table(
        ["figure", "measured"],
        [
            ["base pre-training steps (until the loss flattened)", steps],
            ["steps after growth", fmt(r.get("steps_after_growth"))],
            ["scratch steps (base a + after growth)", fmt(r.get("scratch_steps"))],
            ["scratch final held-out loss", f"{fmt(r.get('scratch_final_heldout_loss'))} (per seed {finals})"],
            ["ratio floor (base a's steps ÷ scratch's)", fmt(r.get("ratio_floor_at_step_0"))],
        ],
    )
    parts = [figures, _horizon_table(r)]
    if "ranking" in r.data:  # LAG at this horizon (3 or more candidates)
        lag = r.get("ranking")
        parts.append(
            f"LAG over these {len(r.get('per_candidate'))} candidates: Spearman at k = {lag['lag_steps']} "
            f"{fmt(lag['spearman_lag_vs_final'])}, right after growth {fmt(lag['spearman_init_vs_final'])}; "
            f"LAG picks {code(lag['lag_pick'])}, the best final is {code(lag['best_final'])}; the finals span "
            f"{fmt(lag['final_spread_over_seed_std'], 1)} seed std."
        )
        rows = [
            [fmt(k["k"]), pct(k["fraction_of_run"], 1), fmt(k["spearman"]), code(k["pick"])]
            for k in lag["spearman_vs_k"]
        ]
        parts.append(table(["k (steps after growth)", "share of the run", "Spearman vs final", "pick"], rows))
    return "\n\n".join([*parts, "Targets:", targets_table(r, "targets")])


def _horizon_table(r: Result) -> str:
    """Grown models (or references) of a growth_horizon run against scratch trained base + run after growth."""
    lag_at = str(r.get("study.lag"))
    rows = [
        [code(name), fmt(c["mean_curve"]["0"]), fmt(c["mean_curve"][lag_at])]
        + [f"{fmt(c['final_heldout_loss'])} ± {fmt(c['final_std'])}", fmt(c["minus_scratch_long_final"])]
        + [fmt(c["steps_after_growth_to_reach"]), fmt(c["steps_with_base_ratio"]), fmt(c["flops_with_base_ratio"])]
        for name, c in r.get("per_candidate").items()
    ]
    headers = ["grown model", "loss at step 0", f"at step {lag_at}", "final ± seed std", "− scratch final"]
    headers += ["steps after growth to reach it"]
    return table([*headers, "steps with base(s) ÷ scratch's", "FLOPs with base(s) ÷ scratch's"], rows)


def _growth_reference(r: Result) -> str:
    steps, final = fmt(r.get("scratch_steps")), fmt(r.get("scratch_final_heldout_loss"))
    return f"Scratch trained {steps} steps ends at {final}; against it:\n\n" + _horizon_table(r)


def _growth_lr_check(r: Result) -> str:
    rows = [
        [fmt(x["lr"]), ", ".join(map(str, x["seeds"])), fmt(x["base_steps"]), fmt(x["scratch_final"])]
        + [fmt(x["scratch_per_seed_final"]["0"]), fmt(x["grown_final"]), fmt(x["grown_per_seed_final"]["0"])]
        + [fmt(x["steps_ratio_at_this_lr"])]
        for x in r.get("per_lr")
    ]
    headers = ["peak lr", "seeds", "base steps", "scratch final (mean)", "scratch, seed 0", "Net2Net final (mean)"]
    rates = table([*headers, "Net2Net, seed 0", "steps ratio at this lr"], rows)
    t = r.get("tuned")
    tuned = (
        f"Each at its best rate (lowest mean final): scratch at {fmt(t['scratch_lr'])} ends at "
        f"{fmt(t['scratch_final'])}; Net2Net at {fmt(t['grown_lr'])} reaches it "
        f"{fmt(t['grown_steps_after_growth_to_reach'])} steps after growth: **{fmt(t['steps_to_scratch_final_ratio'])}"
        f"** of scratch's steps, its base counted."
        + (" One side's best rate is at the edge of the grid." if t["either_best_at_the_grid_edge"] else "")
    )
    return "\n\n".join([rates, tuned, "Targets:", targets_table(r, "targets")])


def _growth_row(label: str, run: dict[str, Any], at_lag: float | None) -> list[str]:
    finals = ", ".join(fmt(s["final_heldout_loss"]) for s in run["per_seed"].values())
    return [label, fmt(run["loss_step_0"]), fmt(at_lag), fmt(run["final_heldout_loss"]), finals]


def _growth_figure(r: Result, key: str) -> str:
    value = r.get(key)
    if key == "lag_pick_final_gap":
        return pct(value) + " of the best final loss"
    return code(value) if isinstance(value, str) else fmt(value)


def _twa(r: Result) -> str:
    budget = r.data.get("twa_run_steps", r.get("settings.steps"))
    inits = r.get("settings").get("inits", ["average"])
    arms = [("full", f"(a) full fine-tune, {r.get('settings.steps')} steps")]
    arms += [("short", f"(s) plain fine-tune of the TWA budget, {budget} steps")] if "short_accuracy" in r.data else []
    arms += [("twa", f"(b) TWA (twa_init={inits[0]})")]
    arms += [("swa", "(c) SWA over the same checkpoints"), ("last", "(d) last checkpoint before the TWA phase")]
    arms += [("twa_v", "(e) TWA-v (coefficients trained on held-out rows)")] if "twa_v_accuracy" in r.data else []
    arms += [(f"twa_{i}", f"(f) TWA (twa_init={i})") for i in inits[1:]]
    rows = [[label, f"{fmt(r.get(f'{k}_accuracy'), 4)} ± {fmt(r.get(f'{k}_accuracy_std'), 4)}"] for k, label in arms]
    means = table(["arm", f"accuracy (mean ± std, seeds {', '.join(map(str, r.get('settings.seeds')))})"], rows)
    seed_keys = [f"{k}_accuracy" for k, _ in arms] + ["confined_steps", "trust_radius"]
    seed_rows = [[s["seed"], *(fmt(s[k], 4) for k in seed_keys)] for s in r.get("per_seed")]
    labels = [label.split(" ", 1)[0] for _, label in arms]
    per_seed = table(["seed", *labels, "TWA steps on the trust boundary", "trust radius"], seed_rows)
    keys = ["twa_total_steps_ratio", "twa_phase_time_fraction", "basis_memory_mb"]
    figures = table(["figure", "measured"], [[code(k), fmt(r.get(k))] for k in keys])
    return "\n\n".join([means, "Per seed:", per_seed, figures, "Targets:", targets_table(r, "targets")])


def _cmd(r: Result) -> str:
    modes = sorted(r.get("relative_reconstruction_error"), key=int)
    steps = sorted(r.get(f"accuracy_gap_per_checkpoint.{modes[0]}"), key=int)
    rows = [
        [m, fmt(r.get(f"relative_reconstruction_error.{m}")), fmt(r.get(f"relative_displacement_error.{m}"))]
        + [fmt(r.get(f"accuracy_gap.{m}"), 2)]
        + [fmt(r.get(f"accuracy_gap_per_checkpoint.{m}.{s}"), 2) for s in steps]
        for m in modes
    ]
    headers = ["M", "relative_reconstruction_error", "relative_displacement_error", "accuracy_gap (points, max)"]
    fits = table(headers + [f"gap at step {s}" for s in steps], rows)
    ratio = r.get("fit_peak_rss_mb") / r.get("naive_peak_rss_mb")
    figures = [
        [
            "`fit_peak_rss_mb` / `naive_peak_rss_mb`",
            f"{fmt(r.get('fit_peak_rss_mb'), 0)} MB / {fmt(r.get('naive_peak_rss_mb'), 0)} MB (ratio {fmt(ratio)})",
        ],
        ["`fit_seconds` / naive seconds", f"{fmt(r.get('fit_seconds'), 1)} s / {fmt(r.get('naive_seconds'), 1)} s"],
        [
            "`embedded_fraction` / `embedded_backward_flops_saved` (run average) / at the end",
            f"{fmt(r.get('embedded_fraction'))} / {fmt(r.get('embedded_backward_flops_saved'))} / "
            f"{fmt(r.get('embedded_backward_flops_saved_at_end'))}",
        ],
    ]
    arms = ["last", "online_cmd", "online_cmd_default", "ema", "swa", "embedded"]
    accuracies = table(
        ["arm", "test accuracy (mean)", "per seed"],
        [
            [
                code(f"{a}_accuracy"),
                fmt(r.get(f"{a}_accuracy"), 4),
                ", ".join(fmt(v, 4) for v in r.get(f"{a}_accuracy_per_seed") or []),
            ]
            for a in arms
        ],
    )
    figures.append(["chosen on validation (first seed)", code(json.dumps(r.get("chosen")))])
    if "posthoc_run" in r.data:  # the post-hoc keys came from a later `--posthoc-only` run
        run = r.get("posthoc_run")
        measured_by = f"{code(run['command'])}, {run['date'][:10]}, {run['device']}; {run['budget']}"
        figures.append(["post-hoc keys measured by", measured_by])
    if "embedded_run" in r.data:  # the embedded keys came from a later `--embedded-only` run
        run = r.get("embedded_run")
        figures.append(["embedded keys measured by", f"{code(run['command'])}, {run['date'][:10]}; {run['budget']}"])
    for previous in r.get("embedded_previous_runs") or []:
        figures.append(
            [
                "replaced embedded run",
                f"accuracy {fmt(previous['embedded_accuracy'], 4)}, backward FLOPs saved "
                f"{fmt(previous['embedded_backward_flops_saved'])} (run average) / "
                f"{fmt(previous['embedded_backward_flops_saved_at_end'])} (end); {previous['run']['budget']}",
            ]
        )
    parts = [accuracies, fits, table(["figure", "measured"], figures), "Targets:", targets_table(r, "targets")]
    return "\n\n".join(parts)


def _cmd_embed_select(r: Result) -> str:
    rows = [
        [
            f"embeddings + layers 0–{c['layers'] - 1}",
            str(c["embedding_step"]),
            f"{pct(c['backward_flops_saved'], 1)} / {pct(c['backward_flops_saved_at_end'], 1)}",
            f"{pct(c['validation_accuracy'])} ({fmt(c['validation_minus_last_points'], 2)})",
            f"{pct(c['test_accuracy'])} ({fmt(c['test_minus_last_points'], 2)})",
            ", ".join(pct(v) for v in c["test_accuracy_per_seed"]),
            "**chosen**" if c["chosen"] else ("" if c.get("eligible", True) else "saved too little"),
        ]
        for c in r.get("candidates")
    ]
    headers = ["embedded (input_first)", "at step", "backward FLOPs saved (run / end)", "validation (− last)"]
    headers += ["test (− last)", "test per seed", ""]
    timing = r.get("step_seconds")
    figures = [
        [
            "last weights (plain run, same seeds)",
            f"validation {pct(r.get('last_validation_accuracy'))}, test "
            f"{pct(r.get('last_accuracy'))} ({', '.join(pct(v) for v in r.get('last_accuracy_per_seed'))})",
        ],
        [
            "step time, all trained / prefix frozen",
            f"{fmt(timing['seconds_per_step_full'], 3)} s / "
            f"{fmt(timing['seconds_per_step_embedded'], 3)} s (ratio {fmt(timing['step_seconds_ratio'], 2)})",
        ],
        [
            "training time saved (step times × steps after embedding)",
            pct(r.get("training_time_saved_from_step_times"), 1),
        ],
    ]
    return (
        table(headers, rows)
        + "\n\n"
        + table(["figure", "measured"], figures)
        + "\n\nTargets:\n\n"
        + targets_table(r, "targets")
    )


_TRANSFER_KEYS = ["source_final_accuracy", "target_init_accuracy", "naive_accuracy", "transferred_accuracy"]
_TRANSFER_STEPS = ["steps_to_source_accuracy_from_transfer", "steps_to_source_accuracy_from_init"]


def _transfer(r: Result) -> str:
    scenarios = [k for k in r.data if k.startswith("scenario_")]
    rows = [
        [
            code(s),
            *(fmt(r.get(f"{s}.{k}")) for k in _TRANSFER_KEYS),
            *(fmt(r.get(f"{s}.{k}"), 1) for k in _TRANSFER_STEPS),
        ]
        + [fmt(r.get(f"{s}.transfer_seconds"), 1)]
        for s in scenarios
    ]
    headers = ["scenario (mean of pairs)", "source final acc.", "target init acc.", "naive acc.", "transferred acc."]
    headers += ["steps to source acc. from transfer", "from init", "transfer seconds"]
    pair_rows = []
    for s in scenarios:
        for i, pair in enumerate(r.get(f"per_pair.{s}")):
            values = [fmt(r.get(f"per_pair.{s}.{i}.{k}")) for k in _TRANSFER_KEYS]
            steps = [
                fmt(pair.get(f"steps_to_source_accuracy_from_{k}"), 0, "not reached")
                for k in ("transfer", "naive", "init")
            ]
            moved = pct(pair["units_moved"], 0) if "units_moved" in pair else "–"
            pair_rows.append([code(s), f"{pair['seed_source']} → {pair['seed_target']}", *values, *steps, moved])
    pair_headers = ["scenario", "pair", "source acc.", "init acc.", "naive acc.", "transferred acc."]
    pair_headers += ["steps from transfer", "steps from naive", "steps from init", "units moved"]
    out = table(headers, rows) + "\n\nPer seed pair (source → target):\n\n" + table(pair_headers, pair_rows)
    made = [[code(sc), code(r.get(f"{sc}.command")), r.data[sc].get("date", "–")] for sc in scenarios]
    out += "\n\nEach scenario's run:\n\n" + table(["scenario", "command", "measured"], made)
    if "minilm_seconds_per_step_source" in r.data:
        seconds, source = fmt(r.get("minilm_seconds_per_step"), 1), r.get("minilm_seconds_per_step_source")
        out += f"\n\n`minilm_seconds_per_step`: {seconds} (from {source})"
        if "minilm_seconds_per_step_in_scenario_runs" in r.data:
            inside = fmt(r.get("minilm_seconds_per_step_in_scenario_runs"), 1)
            out += f"; {inside} s timed inside the scenario runs above, with other benchmarks on the same cores"
    elif "minilm_seconds_per_step" in r.data:
        out += f"\n\n`minilm_seconds_per_step`: {fmt(r.get('minilm_seconds_per_step'), 1)} (mean over the MiniLM pairs)"
    return out


_COMBINED_ARM_KEYS = ["steps_ratio", "train_time_ratio"]


def _combined(r: Result) -> str:
    rows = [
        [
            arm["arm"],
            f"{fmt(arm['accuracy'], 4)} ± {fmt(arm['accuracy_std'], 4)}",
            *(fmt(arm[k]) for k in _COMBINED_ARM_KEYS),
            pct(arm["projection_backward_flops_saved"], 1),
        ]
        for arm in r.get("arms")
    ]
    headers = ["arm", f"accuracy (mean ± std, seeds {', '.join(map(str, r.get('seeds')))})", "steps ratio"]
    headers += ["train-time ratio", "projection backward FLOPs saved"]
    keys = ["mat_twa_accuracy_delta", "mat_twa_steps_ratio", "mat_twa_train_time_ratio"]
    figures = table(["figure", "measured"], [[code(k), fmt(r.get(k), 4)] for k in keys])
    return "\n\n".join([table(headers, rows), figures])


_STARTUP_GOALS = {"import_time_ratio": 1.5, "import_rss_ratio": 1.3, "help_time_ratio": 0.5}


def _startup(r: Result) -> str:
    rows = [
        [cell(c["case"]), fmt(c["median_seconds"], 3), fmt(c["min_seconds"], 3), fmt(c["median_peak_rss_mib"], 1)]
        for c in r.get("cases")
    ]
    cases = table(["case (fresh interpreter)", "median seconds", "fastest seconds", "median peak RSS (MiB)"], rows)
    goals = [
        [code(key), fmt(r.get(key), 3), f"≤ {goal}", "**yes**" if r.get(key) <= goal else "**no**"]
        for key, goal in _STARTUP_GOALS.items()
    ]
    return "\n\n".join([cases, table(["ratio to `import torch`", "measured", "goal", "met"], goals)])


def _causal_lm(r: Result) -> str:
    rows = []
    for arm in r.get("arms"):
        key = arm.replace("+", "_")  # lora+mat_kv -> lora_mat_kv, the prefix of its result keys
        losses = ", ".join(fmt(s.get(f"{arm}/eval_loss"), 4) for s in r.get("per_seed"))
        rows.append(
            [
                code(arm),
                fmt(r.get(f"{key}_eval_loss"), 4),
                losses,
                fmt(r.data.get(f"{key}_backward_flops_ratio", 1.0 if arm == "lora" else None)),
                fmt(r.data.get(f"{key}_cpu_time_ratio", 1.0 if arm == "lora" else None)),
                pct(r.data.get(f"{key}_measurement_overhead"), 1) if "mat" in arm else "–",
            ]
        )
    headers = ["arm", "eval loss (mean)", "per seed", "backward FLOPs ÷ LoRA", "CPU time ÷ LoRA", "MAT probes"]
    keys = ["adapter_mb", "twa_checkpoints", "twa_basis_mb", "cmd_adapter_relative_reconstruction_error"]
    figures = table(["figure", "measured"], [[code(k), fmt(r.get(k), 4)] for k in keys])
    return "\n\n".join(
        [f"Model: {r.get('model')}; base eval loss {fmt(r.get('base_eval_loss'), 4)}.", table(headers, rows), figures]
    )


def _causal_lm_twa_tuning(r: Result) -> str:
    rows = [
        [row["arm"], fmt(row["tuning_eval_loss"], 4), fmt(row["minus_lora"], 4), fmt(row.get("confined_steps"), 0)]
        + [fmt(row.get("moved_spreads"), 3)]
        for row in r.get("candidates")
    ]
    headers = ["candidate", "eval loss (tuning blocks)", "− LoRA", "steps on the trust boundary", "moved (spreads)"]
    seeds = ", ".join(str(s) for s in r.get("seeds"))
    return f"Seed {seeds}; {r.get('tuning_blocks')}; best: {r.get('best')}.\n\n" + table(headers, rows)


def _solar(r: Result) -> str:
    curve = table(
        ["step", "original eval loss", "up-scaled eval loss", "up-scaled − original"],
        [
            [row["step"], fmt(row["original"], 4), fmt(row["upscaled"], 4), fmt(row["upscaled"] - row["original"], 4)]
            for row in r.get("curve")
        ],
    )
    figures = table(
        ["figure", "measured"],
        [
            ["layers (original → up-scaled)", f"{r.get('original_layers')} → {r.get('upscaled_layers')}"],
            ["parameters", f"{r.get('original_parameters'):,} → {r.get('upscaled_parameters'):,}"],
            ["`final_gap` (up-scaled − original, nats)", fmt(r.get("final_gap"), 4)],
            ["`crossover_step` (up-scaled stays at or below from here)", fmt(r.get("crossover_step"), 0, "never")],
            ["`step_seconds_ratio` (up-scaled / original)", fmt(r.get("step_seconds_ratio"), 2)],
        ],
    )
    return curve + "\n\n" + figures


RENDERERS: dict[str, Callable[[Result], str]] = {
    "causal_lm": _causal_lm,
    "causal_lm_twa": _causal_lm,  # the same benchmark run with the lora and TWA arms only (--name causal_lm_twa)
    "causal_lm_twa_tuning": _causal_lm_twa_tuning,  # benchmarks/causal_lm_twa_tune.py: knobs on tuning blocks
    "causal_lm_twa_tuning_wide": _causal_lm_twa_tuning,
    "causal_lm_twa_tuning_wide_seed3": _causal_lm_twa_tuning,
    "causal_lm_twa_tuning_moved": _causal_lm_twa_tuning,  # the same candidates, with how far each phase moved
    "startup": _startup,
    "combined": _combined,
    "baseline_finetune": _baseline,
    "mat": _mat,
    "growth": _growth,
    "growth_horizon": _growth_horizon,  # benchmarks/growth_horizon.py: a run after growth longer than the base's
    "growth_lag_variants": _growth_horizon,  # the same, with settings that tie at step 0 (--name growth_lag_variants)
    "growth_lag_short_warmup": _growth_horizon,  # the same seven with --warmup-after-growth 20
    "growth_no_growth": _growth_reference,  # growth_horizon --candidates "no_growth(base a)" --name growth_no_growth
    "growth_no_growth_untied": _growth_reference,  # the same with the embeddings untied
    "growth_lr_check": _growth_lr_check,  # benchmarks/growth_lr_check.py: each side at its own learning rate
    "twa": _twa,
    "twa_compact": _twa,  # the same benchmark on the TWA budget's own schedule (--compact --name twa_compact)
    "twa_epochs3": _twa,  # the same benchmark over three epochs (--steps 915 --name twa_epochs3)
    "cmd": _cmd,
    "cmd_embed_select": _cmd_embed_select,  # benchmarks/cmd_embed_select.py: embedded CMD's prefix chosen on validation
    "transfer": _transfer,
    "solar": _solar,
}
