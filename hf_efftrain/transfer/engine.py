"""The transfer loop: θ'_s = θ'_0 + π_s(θ_s − θ_0), with π_s found by gradient matching (GMT / FGMT).

* **FGMT** (default): at step s, one new gradient pair — at θ_{s-1} and at the already transferred θ'_{s-1} —
  joins the earlier pairs, and π_s is matched on all of them (T gradient pairs in all).
* **GMT**: at step s, the transferred points θ'_0…θ'_{s-1} are rebuilt with the latest π and their gradients
  re-computed before matching (T(T+1)/2 pairs; more faithful, slower).
* **naive**: π = identity, θ'_0 + (θ_s − θ_0) — the baseline a transfer must beat.

Each step's matching can start from the previous step's permutation (``warm_start``; the first from the identity):
consecutive steps share most gradient pairs, so few groups move and the assignments start near their optimum.
It also keeps what the first steps decided from few pairs; ``TransferConfig`` warm-starts related starts only.
With ``progress`` a bar per matching shows the groups solved in the current sweep and the time left.

Works on any model with a :class:`~hf_efftrain.transfer.spec.PermutationSpec`: ``gradient(params, t)`` is any
callable returning the loss gradient at ``params`` on step t's batches (:class:`LossGradients`). Example::

    for step in transfer_trajectory(path, target_init, spec, gradients, method="fgmt"):
        step.params                    # θ'_s, a state dict
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch

from hf_efftrain.errors import TransferError
from hf_efftrain.log import progress_bar
from hf_efftrain.transfer.config import STAY_AT
from hf_efftrain.transfer.matching import GradientPairs, MatchInfo, Progress, match_permutation
from hf_efftrain.transfer.prior import resolve_prior
from hf_efftrain.transfer.spec import Permutation, PermutationSpec

State = dict[str, torch.Tensor]
GradientFn = Callable[[Mapping[str, torch.Tensor], int], Mapping[str, torch.Tensor]]


@dataclass
class TransferStep:
    """One transferred point: its index s (1…T), parameters θ'_s, the permutation used, matching details."""

    step: int
    params: State
    permutation: Permutation
    match: MatchInfo | None


def transferred_point(
    spec: PermutationSpec,
    source: Mapping[str, torch.Tensor],
    start: Mapping[str, torch.Tensor],
    target_init: Mapping[str, torch.Tensor],
    perm: Permutation,
) -> State:
    """θ'_0 + π(θ − θ_0) for the parameters of ``target_init`` (others of ``source`` are ignored)."""
    delta = {n: source[n].float() - start[n].float() for n in target_init}
    moved = spec.apply(delta, perm)
    return {n: (target_init[n].float() + moved[n]).to(target_init[n].dtype) for n in target_init}


def transfer_trajectory(
    path: Sequence[Mapping[str, torch.Tensor]],
    target_init: Mapping[str, torch.Tensor],
    spec: PermutationSpec,
    gradient: GradientFn,
    method: str = "fgmt",
    max_sweeps: int = 100,
    warm_start: bool | None = True,
    progress: bool = False,
    stay: float | None = 0.0,
    pin_shared: bool = False,
    stay_at: str = "previous",
) -> Iterator[TransferStep]:
    """Yield θ'_1 … θ'_T for source points ``path[0..T]`` (see the module docstring).

    ``stay`` > 0 keeps units where the previous step put them (``stay_at="previous"``) or at the identity
    (``stay_at="identity"``) unless the gradients clearly say otherwise
    (:func:`~hf_efftrain.transfer.matching.match_permutation`); ``stay=None`` and ``stay_at="auto"`` choose from
    how related θ_0 and θ'_0 are (:func:`~hf_efftrain.transfer.prior.resolve_prior`), and so does
    ``warm_start=None`` (each step's matching starts from the previous permutation, or from the identity).
    ``pin_shared`` keeps at the identity the groups whose parameters are equal in θ_0 and θ'_0
    (:meth:`~hf_efftrain.transfer.spec.PermutationSpec.shared_groups`: a shared pretrained body); the default
    ``False`` matches every group, as the paper does."""
    if len(path) < 2:
        raise TransferError(f"a source path needs at least 2 points, got {len(path)}")
    if method not in ("fgmt", "gmt", "naive"):
        raise TransferError(f"unknown transfer method {method!r}; choose fgmt, gmt or naive")
    if stay_at not in STAY_AT:
        raise TransferError(f"unknown stay_at {stay_at!r}; choose {' or '.join(STAY_AT)}")
    start = path[0]
    target_init = {n: t.detach().cpu() for n, t in target_init.items() if n in start}

    def point(t: int, perm: Permutation) -> State:
        return dict(target_init) if t == 0 else transferred_point(spec, path[t], start, target_init, perm)

    perm = spec.identity()
    pinned = spec.shared_groups(start, target_init) if pin_shared else frozenset()
    if method == "naive":
        for s in range(1, len(path)):
            yield TransferStep(s, point(s, perm), perm, None)
        return
    prior = resolve_prior(spec, start, target_init, stay, stay_at, warm_start)
    anchor = spec.identity() if prior.at == "identity" else None
    source_grads: list[Mapping[str, torch.Tensor]] = []
    pairs = GradientPairs(spec, capacity=len(path) - 1)
    current: State = dict(target_init)
    for s in range(1, len(path)):
        source_grads.append(gradient(path[s - 1], s - 1))
        if method == "fgmt":
            pairs.add(source_grads[s - 1], gradient(current, s - 1))
        else:
            pairs = GradientPairs(spec, capacity=s)
            for t in range(s):
                pairs.add(source_grads[t], gradient(point(t, perm), t))
        init = perm if prior.warm_start else None
        label = f"matching {s}/{len(path) - 1}"
        with progress_bar(total=len(spec.groups), desc=label, leave=False, mininterval=0, disable=not progress) as bar:
            perm, info = match_permutation(
                spec, pairs, init, max_sweeps, _report(bar, label), stay=prior.stay, fixed=pinned, anchor=anchor
            )
        current = point(s, perm)
        yield TransferStep(s, current, perm, info)
        if method == "fgmt":
            source_grads[s - 1] = {}  # FGMT never revisits a step: free the memory


def _report(bar, label: str) -> Progress:
    """Move ``bar`` as groups are solved; its length grows when a change makes more groups worth re-solving."""

    def update(sweep: int, solved: int, planned: int) -> None:
        bar.total = planned
        bar.set_description(f"{label} sweep {sweep}", refresh=False)
        bar.update(solved - bar.n)

    return update
