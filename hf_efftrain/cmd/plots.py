"""Figures of a CMD fit: mode time-profiles, clustered |correlation|, per-layer membership, error over time.

Each function writes one PNG (atomically) and returns its path; :func:`plot_all` writes the four. Example::

    plot_all(CMDResult.load("runs/cmd"), "runs/cmd/plots")
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from hf_efftrain.atomic import atomic_file
from hf_efftrain.cmd.result import CMDResult
from hf_efftrain.extras import pyplot

plt = pyplot()

LAYER_PATTERN = re.compile(r"^(.*?\.\d+)\.")


def _save(figure: plt.Figure, path: Path) -> Path:
    with atomic_file(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def plot_mode_profiles(result: CMDResult, path: Path) -> Path:
    """Each mode's reference trajectory, rescaled to [0, 1] so shapes can be compared."""
    figure, axis = plt.subplots(figsize=(7, 4))
    for mode, row in enumerate(result.references):
        span = row.max() - row.min()
        scaled = (row - row.min()) / span if span > 0 else np.zeros_like(row)
        name, index = result.reference_ids[mode]
        axis.plot(result.steps, scaled, label=f"mode {mode}: {name}[{index}]")
    axis.set(xlabel="step", ylabel="reference (min-max scaled)", title="CMD mode profiles")
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: long tensor names hid the curves
    return _save(figure, path)


def plot_correlation(result: CMDResult, path: Path) -> Path:
    """|corr| of the candidates, ordered by mode: good modes are bright diagonal blocks."""
    figure, axis = plt.subplots(figsize=(5.5, 5))
    image = axis.imshow(result.candidate_correlation, vmin=0, vmax=1, cmap="viridis", interpolation="nearest")
    edges = np.flatnonzero(np.diff(result.candidate_labels)) + 0.5
    for edge in edges:
        axis.axhline(edge, color="white", linewidth=0.6)
        axis.axvline(edge, color="white", linewidth=0.6)
    axis.set(title="|correlation| of candidates, clustered", xlabel="candidate", ylabel="candidate")
    figure.colorbar(image, ax=axis, fraction=0.046)
    return _save(figure, path)


def layer_of(name: str) -> str:
    """Group a tensor name by layer: ``bert.encoder.layer.3.attention...`` → ``bert.encoder.layer.3``."""
    match = LAYER_PATTERN.match(name)
    return match.group(1) if match else ".".join(name.split(".")[:2])


def layer_membership(result: CMDResult) -> dict[str, np.ndarray]:
    """Share of each layer's parameters in each mode (last entry: constant parameters), layers in first-seen order."""
    counts: dict[str, np.ndarray] = {}
    for name, info in result.stats["per_tensor"].items():
        row = np.append(np.asarray(info["mode_counts"], dtype=np.float64), info.get("constant", 0))
        row[0] -= row[-1]  # constant parameters are labelled 0: count them apart
        layer = layer_of(name)
        counts[layer] = counts.get(layer, 0) + row
    return {layer: c / max(1.0, c.sum()) for layer, c in counts.items()}


def plot_layer_membership(result: CMDResult, path: Path) -> Path:
    """Stacked bars: which modes each layer's parameters belong to."""
    shares = layer_membership(result)
    layers = list(shares)
    figure, axis = plt.subplots(figsize=(7, 0.3 * len(layers) + 1.5))
    left = np.zeros(len(layers))
    for mode in range(result.num_modes + 1):
        width = np.array([shares[layer][mode] for layer in layers])
        constant = mode == result.num_modes
        style = {"color": "lightgrey", "label": "constant"} if constant else {"label": f"mode {mode}"}
        axis.barh(layers, width, left=left, **style)
        left += width
    axis.invert_yaxis()
    axis.set(xlabel="share of the layer's parameters", title="Mode membership per layer", xlim=(0, 1))
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return _save(figure, path)


def plot_reconstruction_error(result: CMDResult, path: Path) -> Path:
    """Relative error of θ̂(t), against ‖θ(t)‖ and against the displacement ‖θ(t) − θ(0)‖."""
    figure, axis = plt.subplots(figsize=(7, 4))
    as_array = lambda values: np.array([np.nan if v is None else v for v in values])  # noqa: E731
    axis.plot(result.steps, as_array(result.stats["relative_error_per_step"]), label="‖θ̂−θ‖ / ‖θ‖")
    displacement = as_array(result.stats["relative_displacement_error_per_step"])
    displacement[:1] = np.nan  # 0/0 at the first step (θ(0) itself): an arbitrary huge number would flatten the rest
    axis.plot(result.steps, displacement, label="‖θ̂−θ‖ / ‖θ−θ(0)‖")
    axis.set(xlabel="step", ylabel="relative error", yscale="log", title="CMD reconstruction error")
    axis.legend()
    return _save(figure, path)


def plot_all(result: CMDResult, folder: str | os.PathLike) -> list[Path]:
    """The four figures in ``folder``."""
    folder = Path(folder)
    return [
        plot_mode_profiles(result, folder / "mode_profiles.png"),
        plot_correlation(result, folder / "correlation.png"),
        plot_layer_membership(result, folder / "layer_membership.png"),
        plot_reconstruction_error(result, folder / "reconstruction_error.png"),
    ]
