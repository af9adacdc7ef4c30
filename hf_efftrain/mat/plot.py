"""The heat map saved with a MAT run: λmax of every module (rows: layer × head) over measurement steps.

Two panels share the axes: log10 λmax, and the gates (dark = active). Example::

    plot_heatmap(history, unit_names, "out/mat_heatmap.png")
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from hf_efftrain.atomic import atomic_file
from hf_efftrain.extras import pyplot


def plot_heatmap(history: list[dict[str, Any]], unit_names: list[str], path: str | os.PathLike) -> None:
    """Write a PNG with log10 λmax and the active gates per module and measurement step."""
    plt = pyplot()

    if not history:
        raise ValueError("no MAT measurement yet: nothing to plot (train for at least `mat_every` steps)")
    steps = [h["step"] for h in history]
    lam = np.log10(np.maximum(np.array([h["lambda"] for h in history]).T, 1e-30))
    active = np.array([h["active"] for h in history], dtype=float).T
    height = max(3.0, 0.12 * len(unit_names))
    fig, axes = plt.subplots(1, 2, figsize=(12, height), sharey=True)
    extent = (steps[0], steps[-1] if len(steps) > 1 else steps[0] + 1, len(unit_names) - 0.5, -0.5)
    image = axes[0].imshow(lam, aspect="auto", interpolation="nearest", extent=extent, cmap="viridis")
    fig.colorbar(image, ax=axes[0], label="log10 λmax")
    axes[1].imshow(active, aspect="auto", interpolation="nearest", extent=extent, cmap="Greys", vmin=0, vmax=1)
    axes[0].set_title("modular NTK λmax")
    axes[1].set_title(f"active (mean {active.mean():.2f})")
    stride = max(1, len(unit_names) // 40)
    axes[0].set_yticks(range(0, len(unit_names), stride), unit_names[::stride], fontsize=6)
    for ax in axes:
        ax.set_xlabel("step")
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
