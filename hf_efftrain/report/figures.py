"""The report's PNG figures, one function per figure, drawn with matplotlib's Agg backend (no display needed).

Each function writes one PNG atomically and returns its path, or returns ``None`` when the run has no data
for it (e.g. no eval). MAT's λmax-over-time heat map and CMD's mode plots reuse :mod:`hf_efftrain.mat.plot` and
:mod:`hf_efftrain.cmd.plots`, so the report shows the same pictures as the methods' own outputs. Example::

    training_curves(run.log_history, Path("report/training.png"))
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from hf_efftrain.atomic import atomic_file
from hf_efftrain.cmd.result import CMDResult
from hf_efftrain.extras import pyplot

plt = pyplot()  # the 'plots' extra, named when missing
MaxNLocator = plt.MaxNLocator

UNIT_PATTERN = re.compile(r"^L(\d+)\.(?:H(\d+)|FFN)$")
# Logged eval keys that are speeds or bookkeeping, not model quality.
EVAL_NOISE = ("_runtime", "_samples_per_second", "_steps_per_second", "epoch")


def save_figure(figure: plt.Figure, path: Path) -> Path:
    """Write ``figure`` as a PNG atomically and free it (step axes get whole-number ticks)."""
    for axis in figure.axes:
        if axis.get_xlabel() in ("step", "training step"):
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    with atomic_file(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def eval_metric_names(log_history: list[dict[str, Any]]) -> list[str]:
    """Logged ``eval_*`` quality metrics other than the loss, in first-seen order."""
    names = dict.fromkeys(k for e in log_history for k in e if k.startswith("eval_") and k != "eval_loss")
    return [n for n in names if not n.endswith(EVAL_NOISE) and isinstance(_first(log_history, n), int | float)]


def _first(log_history: list[dict[str, Any]], key: str) -> Any:
    return next(e[key] for e in log_history if key in e)


def _series(log_history: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(e["step"], e[key]) for e in log_history if key in e and "step" in e]
    return [p[0] for p in points], [float(p[1]) for p in points]


def training_curves(log_history: list[dict[str, Any]], path: Path) -> Path | None:
    """Training loss and eval loss over steps; eval metrics in a second panel when there are any."""
    train = _series(log_history, "loss")
    names = eval_metric_names(log_history)
    losses = ["eval_loss"] * any("eval_loss" in e for e in log_history) + [n for n in names if n.endswith("_loss")]
    metrics = [n for n in names if not n.endswith("_loss")]  # other eval losses share the loss panel's scale
    if not train[0] and not losses and not metrics:
        return None
    panels = 2 if metrics else 1
    figure, axes = plt.subplots(1, panels, figsize=(6 * panels, 3.6), squeeze=False)
    loss_axis = axes[0][0]
    if train[0]:
        loss_axis.plot(*train, label="train loss", linewidth=1.2)
    for name in losses:
        loss_axis.plot(*_series(log_history, name), "o-", label=name.replace("_", " "))
    loss_axis.set(xlabel="step", ylabel="loss", title="Loss")
    loss_axis.legend(fontsize=8)
    loss_axis.grid(alpha=0.3)
    if metrics:
        axis = axes[0][1]
        for name in metrics:
            steps, values = _series(log_history, name)
            axis.plot(steps, values, "o-", label=name)
        axis.set(xlabel="step", title="Eval metrics")
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    return save_figure(figure, path)


def unit_grid(units: list[str], values: list[float]) -> tuple[np.ndarray, list[str]]:
    """Arrange per-module values as layers × (heads [+ FFN]); NaN where a layer has no such module."""
    parsed = [UNIT_PATTERN.match(u) for u in units]
    if not all(parsed):  # names we cannot place: one row
        return np.asarray([values], dtype=float), [str(i) for i in range(len(values))]
    layers = max(int(m.group(1)) for m in parsed) + 1
    heads = max((int(m.group(2)) for m in parsed if m.group(2) is not None), default=-1) + 1
    has_ffn = any(m.group(2) is None for m in parsed)
    grid = np.full((layers, heads + has_ffn), np.nan)
    for match, value in zip(parsed, values, strict=True):
        column = int(match.group(2)) if match.group(2) is not None else heads
        grid[int(match.group(1)), column] = value
    return grid, [f"H{h}" for h in range(heads)] + (["FFN"] if has_ffn else [])


def mat_lambda_grid(mat: dict[str, Any], path: Path) -> Path | None:
    """log10 λmax per layer × head at the last measurement; frozen modules crossed out."""
    if not mat.get("history"):
        return None
    last = mat["history"][-1]
    lam, columns = unit_grid(mat["units"], np.log10(np.maximum(np.asarray(last["lambda"], float), 1e-30)).tolist())
    active, _ = unit_grid(mat["units"], [float(a) for a in last["active"]])
    figure, axis = plt.subplots(figsize=(max(4.5, 0.45 * len(columns) + 2.5), max(2.8, 0.4 * len(lam) + 1.4)))
    image = axis.imshow(lam, cmap="viridis", aspect="auto", interpolation="nearest")
    figure.colorbar(image, ax=axis, label="log10 λmax")
    rows, cols = np.nonzero(active == 0)
    axis.scatter(cols, rows, marker="x", color="red", s=40, label="frozen for the next steps")
    axis.set_xticks(range(len(columns)), columns, fontsize=7, rotation=90 if len(columns) > 16 else 0)
    axis.set_yticks(range(len(lam)), [f"layer {i}" for i in range(len(lam))], fontsize=7)
    axis.set_title(f"MAT λmax at step {last['step']} (last measurement)")
    if len(rows):
        axis.legend(loc="upper left", bbox_to_anchor=(0, -0.12), fontsize=7, frameon=False)
    return save_figure(figure, path)


def mat_active_fraction(mat: dict[str, Any], path: Path) -> Path | None:
    """Share of active modules over the measurement steps, overall and per layer."""
    history = mat.get("history") or []
    if not history:
        return None
    steps = [h["step"] for h in history]
    active = np.asarray([h["active"] for h in history], dtype=float)  # [measurements, modules]
    figure, axis = plt.subplots(figsize=(7, 3.6))
    layers = [m.group(1) if (m := UNIT_PATTERN.match(u)) else None for u in mat["units"]]
    if None not in layers and len(set(layers)) <= 24:
        for layer in dict.fromkeys(layers):
            columns = [i for i, value in enumerate(layers) if value == layer]
            axis.plot(steps, active[:, columns].mean(axis=1), linewidth=0.8, alpha=0.6, label=f"layer {layer}")
    axis.plot(steps, active.mean(axis=1), "k-o", linewidth=2, markersize=3, label="all modules")
    axis.set(xlabel="step", ylabel="active share", ylim=(-0.03, 1.03), title="MAT: active modules over training")
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    axis.grid(alpha=0.3)
    return save_figure(figure, path)


def basis_labels(twa: dict[str, Any], count: int) -> tuple[str, list[str]]:
    """x-axis name and tick labels: basis directions (subspace) or collected checkpoints (layer-wise)."""
    if twa.get("form") == "layerwise":
        steps = twa.get("collected_steps") or []
        return "checkpoint (step)", [str(s) for s in steps] if len(steps) == count else [str(i) for i in range(count)]
    return "basis direction", [f"p{i}" for i in range(count)]


def twa_final_coefficients(twa: dict[str, Any], path: Path) -> Path | None:
    """Bar chart of the final coefficient of each basis vector (layer-wise: mean over tensors)."""
    final = np.asarray(twa.get("final_coefficients") or [], dtype=float)
    if final.size == 0:
        return None
    values = final.mean(axis=1) if final.ndim == 2 else final
    xlabel, labels = basis_labels(twa, len(values))
    figure, axis = plt.subplots(figsize=(max(5, 0.35 * len(values) + 2), 3.6))
    axis.bar(range(len(values)), values, color=["tab:blue" if v >= 0 else "tab:orange" for v in values])
    axis.axhline(0, color="black", linewidth=0.6)
    axis.set_xticks(range(len(values)), labels, fontsize=7, rotation=90 if len(values) > 12 else 0)
    mean = " (mean over tensors)" if final.ndim == 2 else ""
    ylabel = "coefficient X" if twa.get("form") == "layerwise" else "coordinate of θ − average"
    axis.set(xlabel=xlabel, ylabel=ylabel + mean, title="TWA: final coefficients")
    axis.grid(alpha=0.3, axis="y")
    return save_figure(figure, path)


def twa_coefficient_trajectory(twa: dict[str, Any], path: Path) -> Path | None:
    """Each coefficient over the TWA steps (they start at 0: the plain average)."""
    history = twa.get("history") or []
    if not history:
        return None
    steps = [h["step"] for h in history]
    values = np.asarray([h["coefficients"] for h in history], dtype=float)  # [twa steps, vectors]
    _, labels = basis_labels(twa, values.shape[1])
    figure, axis = plt.subplots(figsize=(7, 3.6))
    for column, label in enumerate(labels):
        # 10 colours, then a new line style and marker each 10: p0 and p10 must not look alike
        style, marker = [("-", "."), ("--", "x"), (":", "^"), ("-.", "s")][(column // 10) % 4]
        marker = marker if len(steps) < 40 else None
        axis.plot(steps, values[:, column], style, color=f"C{column % 10}", marker=marker, label=label)
    axis.axhline(0, color="black", linewidth=0.6)
    ylabel = "mean coefficient X" if twa.get("form") == "layerwise" else "coordinate of θ − average"
    axis.set(xlabel="training step", ylabel=ylabel, title="TWA: coefficients over the TWA phase")
    columns = math.ceil(len(labels) / 16)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), ncol=columns, handlelength=3)
    axis.grid(alpha=0.3)
    return save_figure(figure, path)


def twa_layerwise_matrix(twa: dict[str, Any], path: Path) -> Path | None:
    """Layer-wise form: the final X per checkpoint (rows) and tensor (columns)."""
    final = np.asarray(twa.get("final_coefficients") or [], dtype=float)
    if final.ndim != 2 or final.size == 0:
        return None
    names = twa.get("tensor_names") or [str(i) for i in range(final.shape[1])]
    _, labels = basis_labels(twa, final.shape[0])
    limit = float(np.abs(final).max()) or 1.0
    figure, axis = plt.subplots(figsize=(min(28, max(6, 0.2 * len(names) + 3)), max(2.5, 0.3 * len(labels) + 1.5)))
    image = axis.imshow(final, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest")
    figure.colorbar(image, ax=axis, label="coefficient X")
    stride = max(1, len(names) // 60)
    axis.set_xticks(range(0, len(names), stride), names[::stride], fontsize=6, rotation=90)
    axis.set_yticks(range(len(labels)), labels, fontsize=7)
    axis.set(ylabel="checkpoint (step)", title="TWA (layer-wise): final coefficient per checkpoint and tensor")
    return save_figure(figure, path)


def cmd_mode_sizes(result: CMDResult, path: Path) -> Path | None:
    """Parameters per CMD mode, and the share of them that moved."""
    per_mode = result.stats.get("per_mode") or []
    if not per_mode:
        return None
    sizes = [m["parameters"] for m in per_mode]
    moving = [m.get("moving", m["parameters"]) for m in per_mode]
    figure, axis = plt.subplots(figsize=(max(5, 0.6 * len(sizes) + 2), 3.6))
    positions = np.arange(len(sizes))
    axis.bar(positions, sizes, color="lightsteelblue", label="parameters")
    axis.bar(positions, moving, width=0.5, color="tab:blue", label="of which moving")
    axis.set_xticks(positions, [f"mode {m}" for m in positions], fontsize=8)
    axis.set(ylabel="parameters", title="CMD: mode sizes")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3, axis="y")
    return save_figure(figure, path)


def cmd_embedding(cmd_report: dict[str, Any], path: Path) -> Path | None:
    """Embedded CMD: share of parameters embedded at each embedding step."""
    history = cmd_report.get("embedding_history") or []
    if not history:
        return None
    steps = [h["step"] for h in history]
    figure, axis = plt.subplots(figsize=(7, 3.4))
    axis.plot(steps, [h.get("embedded_fraction", np.nan) for h in history], "o-", label="embedded share")
    axis.set(xlabel="step", ylabel="share of parameters", ylim=(0, 1), title="Embedded CMD: parameters embedded")
    axis.grid(alpha=0.3)
    return save_figure(figure, path)
