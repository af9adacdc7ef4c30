"""TWA-v: the TWA phase trains on rows held out of the training data, not on the batches phase 1 trained on.

Why (journal version of TWA): the checkpoints were fitted to the training batches, so coefficients trained on the
same batches favour whatever fits them best, which is the last, most overfitted checkpoint; rows the run never
trained on judge the average instead, like a validation set, without touching the evaluation data.
:func:`split_holdout` takes a seeded share of the training rows out before training starts, and
:class:`HoldoutBatches` serves them, shuffled anew on every pass, in an order that depends only on the seed
and on how many batches were served (so a resumed run continues with the same batches). Example::

    train, held_out = split_holdout(train_dataset, fraction=0.1, seed=42)
    batches = HoldoutBatches(lambda sampler: DataLoader(held_out, batch_size=8, sampler=sampler), len(held_out), 42)
    batch = next(batches.iterator())
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sized
from typing import Any

import torch
from torch.utils.data import Sampler, Subset

from hf_efftrain.errors import TWAConfigError


def split_holdout(dataset: Any, fraction: float, seed: int) -> tuple[Any, Any]:
    """(training rows, held-out rows): ``ceil(fraction × rows)`` rows drawn with ``seed``; each keeps its order."""
    if not isinstance(dataset, Sized):
        raise TWAConfigError(
            "twa_holdout needs a train_dataset with a length to split (not an IterableDataset): set twa_holdout=0"
        )
    rows = len(dataset)
    held = math.ceil(fraction * rows)
    if held >= rows:
        raise TWAConfigError(f"twa_holdout={fraction} of {rows} training rows leaves none to train on: lower it")
    order = torch.randperm(rows, generator=torch.Generator().manual_seed(seed))
    held_out, kept = sorted(order[:held].tolist()), sorted(order[held:].tolist())
    if hasattr(dataset, "select"):  # datasets.Dataset: stays one, so the Trainer can drop unused columns
        return dataset.select(kept), dataset.select(held_out)
    return Subset(dataset, kept), Subset(dataset, held_out)


class SeededPasses(Sampler[int]):
    """A new permutation of ``rows`` on every pass, drawn from ``seed`` and the pass number only."""

    def __init__(self, rows: int, seed: int) -> None:
        self.rows, self.seed, self.passes = rows, seed, 0

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.passes)
        self.passes += 1
        return iter(torch.randperm(self.rows, generator=generator).tolist())

    def __len__(self) -> int:
        return self.rows


class HoldoutBatches:
    """Endless batches of the held-out rows; ``served`` counts them (saved with the TWA state, for resume)."""

    def __init__(self, make_loader: Callable[[Sampler[int]], Any], rows: int, seed: int) -> None:
        self.sampler = SeededPasses(rows, seed)
        self.make_loader = make_loader  # called when the first batch is needed: the Trainer is set up by then
        self.loader: Any = None
        self.served = 0
        self._stream: Iterator | None = None

    def restart_at(self, served: int) -> None:
        """Continue as a run that had served ``served`` batches (0: a new run)."""
        self.served, self._stream = served, None

    def iterator(self) -> Iterator:
        """The stream, continuing where it stopped (after a resume: after the ``served`` batches of the killed run)."""
        if self._stream is None:
            self._stream = self._batches()
        return self._stream

    def _batches(self) -> Iterator:
        if self.loader is None:
            self.loader = self.make_loader(self.sampler)
        per_pass = len(self.loader)
        self.sampler.passes, skip = divmod(self.served, per_pass)
        while True:
            stream = _without_global_rng(lambda: iter(self.loader))
            for index in itertools.count():
                batch = _without_global_rng(lambda: next(stream, _END))  # noqa: B023 - called at once
                if batch is _END:
                    break
                if index >= skip:
                    self.served += 1
                    yield batch
            skip = 0


_END = object()


def _without_global_rng(fetch: Callable[[], Any]) -> Any:
    """Run ``fetch`` with the global CPU random state saved and put back.

    Why: a DataLoader draws a seed from it whenever an iterator starts. A resumed run restores the random state
    (dropout) of its checkpoint only after its first batch is fetched, so a draw here would make the resumed and
    the uninterrupted run diverge.
    """
    with torch.random.fork_rng(devices=[]):
        return fetch()
