"""Which prior the matching gets, and whether its steps are warm-started: for a target that shares the source's
pretrained weights the identity prior, warm-started; for unrelated starts the paper's plain matching, each step
from the identity.

When θ'_0 descends from the same pretrained weights as θ_0 (a new head's seed, or a copy fine-tuned on its own),
their hidden units already correspond one to one, and plain matching re-permutes a large share of them from a
few gradient batches: noise. A prior towards the identity keeps a unit in place unless the gradients clearly
move it. Measured on MiniLM-L6 (``docs/transfer.md``): with it the transferred point is better and fine-tunes
faster in both shared-body scenarios, while on independently initialized models it lost accuracy, so it is
applied only when the two starts are related. Related means a cosine similarity of at least
:data:`RELATED_SIMILARITY` between the two starts over the weight matrices the permutation spec covers: independent
initializations sit near 0, a shared pretrained body near 1. Example::

    prior = resolve_prior(spec, theta_0, target_init, stay=None, stay_at="auto", warm_start=None)
    prior.stay, prior.at, prior.warm_start          # 1.0, "identity", True for a shared body
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from hf_efftrain.transfer.spec import PermutationSpec

RELATED_SIMILARITY = 0.5
RELATED_STAY = 1.0  # row standard deviations: the setting measured on the shared-body scenarios


@dataclass(frozen=True)
class Prior:
    """The resolved prior: its strength (0 = plain matching), where it sits, and the starts' similarity."""

    stay: float
    at: str
    similarity: float | None
    warm_start: bool = True

    @property
    def related(self) -> bool:
        """Whether the starts were found to share pretrained weights (False when they were not compared)."""
        return self.similarity is not None and self.similarity >= RELATED_SIMILARITY

    def to_dict(self) -> dict[str, object]:
        """For the transfer report."""
        return {
            "stay": self.stay,
            "at": self.at,
            "warm_start": self.warm_start,
            "similarity": self.similarity,
            "related": self.related,
        }


def start_similarity(spec: PermutationSpec, a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    """Cosine similarity of ``a`` and ``b`` over the weight matrices ``spec`` permutes (those present in both).

    Vectors are left out: LayerNorm scales start at 1 in every model, and would make unrelated models look alike."""
    dot = norm_a = norm_b = 0.0
    for name in spec.axes:
        if name in a and name in b and a[name].dim() >= 2:
            x, y = a[name].detach().double().flatten(), b[name].detach().double().flatten()
            dot += float(x @ y)
            norm_a += float(x @ x)
            norm_b += float(y @ y)
    return dot / (norm_a * norm_b) ** 0.5 if norm_a and norm_b else 0.0


def resolve_prior(
    spec: PermutationSpec,
    start: Mapping[str, torch.Tensor],
    target_init: Mapping[str, torch.Tensor],
    stay: float | None,
    stay_at: str,
    warm_start: bool | None = True,
) -> Prior:
    """``stay=None``, ``stay_at="auto"`` and ``warm_start=None`` follow the starts' relation; explicit values are
    kept as given. Unrelated starts match each step from the identity (``warm_start`` False): warm starts keep
    what the first steps decided from few gradient pairs, which cost accuracy between independent initializations
    (``docs/transfer.md``); related ones have the identity prior, and a warm start makes their steps cheap."""
    similarity = None
    if stay is None or stay_at == "auto" or warm_start is None:
        similarity = start_similarity(spec, start, target_init)
    related = similarity is not None and similarity >= RELATED_SIMILARITY
    strength = stay if stay is not None else (RELATED_STAY if related else 0.0)
    at = stay_at if stay_at != "auto" else ("identity" if related else "previous")
    return Prior(strength, at, similarity, warm_start if warm_start is not None else related)


def describe_prior(prior: Mapping[str, object]) -> str:
    """A report's ``prior`` entry (:meth:`Prior.to_dict`) in one phrase: what the run got, and why when it was chosen
    from the starts' relation."""
    why = ""
    if prior["similarity"] is not None:
        relation = "shares" if prior["related"] else "does not share"
        why = f" (the target {relation} the source's pretrained weights: cosine {prior['similarity']:.3f})"
    start = "warm-started" if prior["warm_start"] else "each step from the identity"
    if not prior["stay"]:
        return f"none, the paper's plain matching, {start}{why}"
    return f"stay {prior['stay']:g} at the {prior['at']} permutation, {start}{why}"
