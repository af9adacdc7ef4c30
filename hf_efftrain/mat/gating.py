"""From smoothed λmax to gates: EMA, the dynamic threshold, warm-up and the GQA rule. Pure functions on tensors.

The threshold is *relative* to the current distribution (λmax scales change with the loss and the learning
rate, an absolute cut would drift): with the default ``mean`` rule a module is active when its smoothed λmax is
at least ``threshold × mean`` of its group. Groups separate module kinds (a head and an FFN block have kernels
of different sizes) and, with ``scope="layer"``, layers. The largest module of each group always stays active,
so training never stalls. Example::

    ema = update_ema(None, lam, decay=0.5)
    active = threshold_gates(ema, groups, rule="mean", threshold=1.0)
"""

from __future__ import annotations

import torch

from hf_efftrain.mat.layout import Layout


def update_ema(previous: torch.Tensor | None, value: torch.Tensor, decay: float) -> torch.Tensor:
    """``decay × previous + (1 − decay) × value``; the first measurement is taken as is."""
    if previous is None:
        return value.clone()
    return decay * previous + (1.0 - decay) * value


def unit_groups(layout: Layout, scope: str) -> list[list[int]]:
    """Unit ids that compete against each other for one threshold."""
    kinds = sorted({u.kind for u in layout.units})
    if scope == "model":
        return [layout.unit_ids(kind) for kind in kinds]
    return [ids for kind in kinds for layer in range(layout.num_layers) if (ids := layout.unit_ids(kind, layer))]


def threshold_gates(values: torch.Tensor, groups: list[list[int]], rule: str, threshold: float) -> torch.Tensor:
    """Boolean gates: within each group, ``values >= cut`` where the cut follows ``rule``; the top one stays on."""
    active = torch.zeros(values.shape[0], dtype=torch.bool)
    for ids in groups:
        group = values[ids].double()
        if rule == "mean":
            cut = threshold * group.mean()
        elif rule == "max":
            cut = threshold * group.max()
        else:
            cut = torch.quantile(group, threshold)
        keep = group >= cut
        keep[group.argmax()] = True
        active[ids] = keep
    return active


def gates_for_step(
    ema: torch.Tensor | None, layout: Layout, step: int, warmup_steps: int, rule: str, threshold: float, scope: str
) -> torch.Tensor:
    """All active during warm-up (or before any measurement); thresholded EMA afterwards."""
    if ema is None or step < warmup_steps:
        return torch.ones(len(layout.units), dtype=torch.bool)
    return threshold_gates(ema, unit_groups(layout, scope), rule, threshold)
