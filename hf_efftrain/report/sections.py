"""One report section per topic: the run's training curves, then MAT, TWA and CMD (or a note that it was unused).

Each builder draws its figures into the report folder (see :mod:`figures`) and returns a
:class:`~hf_efftrain.report.page.Section` of tables and image references. Key figures come straight from the
run's JSON files, so the page and the artifacts agree. Example::

    page = Page("Run report", build_sections(collect_run("outputs/run"), Path("outputs/run/report")))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hf_efftrain.cmd import plots as cmd_plots
from hf_efftrain.cmd.result import CMDResult
from hf_efftrain.mat.plot import plot_heatmap
from hf_efftrain.report import figures
from hf_efftrain.report.collect import RunArtifacts
from hf_efftrain.report.page import Block, Image, Section, Table, Text, cell, key_values

MAT_TITLE = "MAT (modular adaptive training)"
TWA_TITLE = "TWA (trainable weight averaging)"
CMD_TITLE = "CMD (correlation mode decomposition)"
NO_STATE = (
    "No trainer_state.json in the run folder or its checkpoint-N folders, so no loss or eval curves: "
    "call trainer.save_state() after training, or save checkpoints."
)


def image(path: Path | None, caption: str) -> list[Block]:
    """An image block for a drawn figure (by file name, next to the page), nothing when it was not drawn."""
    return [Image(path.name, caption)] if path is not None else []


def unused(title: str, why: str) -> Section:
    """The note of a method the run did not use: what was looked for and how to turn the method on."""
    return Section(title, [Text(f"Not used in this run: {why}")], used=False)


def final_eval_metrics(log_history: list[dict[str, Any]]) -> dict[str, Any]:
    """The last logged value of every ``eval_*`` quality metric (speeds left out)."""
    names = (["eval_loss"] if any("eval_loss" in e for e in log_history) else []) + figures.eval_metric_names(
        log_history
    )
    return {name: [e[name] for e in log_history if name in e][-1] for name in names}


def run_section(run: RunArtifacts, folder: Path) -> Section:
    """Where the figures come from, training length, final losses and eval metrics, and the curves."""
    state, logs = run.trainer_state or {}, run.log_history
    losses = [e["loss"] for e in logs if "loss" in e]
    overview = {
        "run folder": str(run.run_dir),
        "trainer state": str(run.trainer_state_path) if run.trainer_state_path else "not found",
        "steps done": state.get("global_step"),
        "max steps": state.get("max_steps"),
        "last training loss": losses[-1] if losses else None,
        "snapshots (snapshot-N)": f"{len(run.snapshot_steps)} (steps {run.snapshot_steps[0]}–{run.snapshot_steps[-1]})"
        if run.snapshot_steps
        else "none",
    }
    blocks: list[Block] = [key_values(overview)]
    if run.trainer_state is None:
        blocks.append(Text(NO_STATE))
    metrics = final_eval_metrics(logs)
    if metrics:
        blocks += [Text("Final evaluation metrics:"), key_values(metrics, ("metric", "value"))]
    else:
        blocks.append(Text("No evaluation was logged (set eval_strategy to see eval metrics here)."))
    blocks += image(figures.training_curves(logs, folder / "training.png"), "Training and evaluation curves")
    return Section("Run", blocks)


def _active_per_layer(units: list[str], active: list[bool]) -> Table:
    """Per layer: active modules out of all, and which ones are frozen."""
    rows: dict[str, list[tuple[str, bool]]] = {}
    for unit, on in zip(units, active, strict=True):
        match = figures.UNIT_PATTERN.match(unit)
        rows.setdefault(f"layer {match.group(1)}" if match else "–", []).append((unit, bool(on)))
    body = tuple(
        (layer, f"{sum(on for _, on in members)} / {len(members)}", cell([u for u, on in members if not on]) or "–")
        for layer, members in rows.items()
    )
    return Table(("layer", "active", "frozen"), body)


def mat_section(run: RunArtifacts, folder: Path) -> Section:
    """λmax per head at the last measurement, λmax and gates over time, active share, key numbers."""
    mat = run.mat
    if mat is None or not mat.get("history"):
        why = "no mat_history.json and no MAT state in trainer_state.json (train with mat=True)."
        return unused(MAT_TITLE, why)
    last, config = mat["history"][-1], mat.get("config", {})
    active = [bool(a) for a in last["active"]]
    full, done = mat.get("flops_full") or 0.0, mat.get("flops_done") or 0.0
    summary = {
        "source": run.mat_source,
        "measurements": mat.get("measurements", len(mat["history"])),
        "last measurement step": last["step"],
        "active modules": f"{sum(active)} / {len(active)}",
        "active share": sum(active) / len(active),
        "projection backward FLOPs saved": 1.0 - done / full if full else None,
        "λmax measurement seconds": mat.get("measure_seconds"),
        **{
            f"config: {k}": v
            for k, v in config.items()
            if k in ("every", "warmup_steps", "threshold_rule", "threshold", "granularity", "scope")
        },
    }
    blocks: list[Block] = [
        key_values(summary),
        Text("Modules at the last measurement:"),
        _active_per_layer(mat["units"], active),
    ]
    blocks += image(
        figures.mat_lambda_grid(mat, folder / "mat_lambda_last.png"), "λmax per layer and head at the last measurement"
    )
    over_time = folder / "mat_lambda_over_time.png"
    plot_heatmap(mat["history"], mat["units"], over_time)
    blocks += image(over_time, "log10 λmax (left) and gates (right, black = active) of each module over time")
    blocks += image(
        figures.mat_active_fraction(mat, folder / "mat_active.png"), "Share of active modules over training"
    )
    return Section(MAT_TITLE, blocks)


def twa_section(run: RunArtifacts, folder: Path) -> Section:
    """Collected checkpoints, the TWA report, final coefficients and their path over the TWA phase."""
    twa = run.twa
    if twa is None:
        return unused(TWA_TITLE, "no twa_history.json (train with twa=True; the run must reach the TWA phase).")
    steps = twa.get("collected_steps") or []
    summary = {
        "form": twa.get("form"),
        "collected at steps": steps or "from a folder",
        "TWA steps": len(twa.get("history") or []),
    }
    summary.update(twa.get("report") or {})
    final = np.asarray(twa.get("final_coefficients") or [], dtype=float)
    blocks: list[Block] = [key_values(summary)]
    if final.size and final.shape[0] <= 64:
        values = final.mean(axis=1) if final.ndim == 2 else final
        xlabel, labels = figures.basis_labels(twa, len(values))
        name = "mean coefficient over tensors" if final.ndim == 2 else "final coordinate of θ − average"
        blocks += [
            Text("Final coefficients:"),
            Table((xlabel, name), tuple((label, cell(float(v))) for label, v in zip(labels, values, strict=True))),
        ]
    blocks += image(figures.twa_final_coefficients(twa, folder / "twa_final.png"), "Final TWA coefficients")
    blocks += image(
        figures.twa_coefficient_trajectory(twa, folder / "twa_trajectory.png"), "TWA coefficients over the TWA steps"
    )
    blocks += image(
        figures.twa_layerwise_matrix(twa, folder / "twa_layerwise.png"), "Final coefficient per checkpoint and tensor"
    )
    return Section(TWA_TITLE, blocks)


def cmd_fit_blocks(result: CMDResult, folder: Path, prefix: str, label: str, lead: str) -> list[Block]:
    """Statistics, per-mode table and the CMD plots of one fit (the warm-up fit of online CMD or a post-hoc fit)."""
    stats = result.stats
    summary = {
        "checkpoints": len(result.steps),
        "steps": f"{result.steps[0]}–{result.steps[-1]}" if result.steps else None,
        "modes": result.num_modes,
        "parameters": stats.get("num_parameters"),
        "moving parameters": stats.get("moving_parameters"),
        "relative reconstruction error": stats.get("relative_reconstruction_error"),
        "relative displacement error": stats.get("relative_displacement_error"),
    }
    blocks: list[Block] = [Text(lead), key_values(summary)]
    rows = result.summary_rows()
    if rows:
        blocks.append(Table(tuple(rows[0]), tuple(tuple(cell(v) for v in row.values()) for row in rows)))
    blocks += image(cmd_plots.plot_mode_profiles(result, folder / f"{prefix}_profiles.png"), f"{label} mode profiles")
    blocks += image(figures.cmd_mode_sizes(result, folder / f"{prefix}_sizes.png"), f"{label} mode sizes")
    if stats.get("per_tensor"):
        blocks += image(
            cmd_plots.plot_layer_membership(result, folder / f"{prefix}_membership.png"),
            f"{label} mode membership per layer",
        )
    if stats.get("relative_error_per_step"):
        blocks += image(
            cmd_plots.plot_reconstruction_error(result, folder / f"{prefix}_error.png"), f"{label} reconstruction error"
        )
    if result.candidate_correlation.size:
        blocks += image(
            cmd_plots.plot_correlation(result, folder / f"{prefix}_correlation.png"), f"{label} clustered correlation"
        )
    return blocks


def cmd_section(run: RunArtifacts, folder: Path) -> Section:
    """Online/embedded CMD figures (cmd_report.json, cmd_modes.json) and any post-hoc fit (cmd_posthoc/)."""
    if run.cmd_report is None and run.cmd_modes is None and run.cmd_posthoc is None:
        why = "no cmd_report.json, cmd_modes.json or cmd_posthoc/ (train with cmd_online=True)."
        return unused(CMD_TITLE, why)
    blocks: list[Block] = []
    if run.cmd_report is not None:
        online = {k: v for k, v in run.cmd_report.items() if k != "embedding_history"}
        blocks += [Text("Online CMD (cmd_report.json):"), key_values(online)]
        blocks += image(
            figures.cmd_embedding(run.cmd_report, folder / "cmd_embedding.png"), "Share of parameters embedded"
        )
    if run.cmd_modes is not None:
        lead = "Modes frozen after the warm-up of online CMD (cmd_modes.json):"
        blocks += cmd_fit_blocks(run.cmd_modes, folder, "cmd_online", "Online CMD (warm-up fit):", lead)
    if run.cmd_posthoc is not None:
        lead = "Post-hoc fit of the run's snapshots (cmd_posthoc/):"
        blocks += cmd_fit_blocks(run.cmd_posthoc, folder, "cmd_posthoc", "Post-hoc CMD:", lead)
    return Section(CMD_TITLE, blocks)


def build_sections(run: RunArtifacts, folder: Path) -> list[Section]:
    """All sections, in page order."""
    return [run_section(run, folder), mat_section(run, folder), twa_section(run, folder), cmd_section(run, folder)]
