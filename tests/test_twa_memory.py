"""TWA holds one copy of each parameter-sized vector per process, and a projection reads nothing back to the host.

Sizes are measured on a tiny BERT: the bytes ``torch.save`` writes for the TWA state (what a checkpoint stores and
what the process holds), in units of D × 4 bytes (one float32 vector of the trainable parameters).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch

from hf_efftrain.testing import tiny_model
from hf_efftrain.twa import Collector, SubspaceBasis, TrainableView, TWAConfig
from hf_efftrain.twa.optimize import SubspaceTWA

CHECKPOINTS = 4
PICKLE_SLACK = 4_096  # bytes of torch.save framing around the tensors (measured: under 3 KB here), below one vector


def _saved_bytes(state: dict) -> int:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.tell()


def _collector(form: str) -> tuple[Collector, int]:
    model = tiny_model("bert", task="classification", seed=0)
    view = TrainableView(model)
    collector = Collector(view, TWAConfig(form=form))
    gen = torch.Generator().manual_seed(0)
    base = view.vector()
    for _ in range(CHECKPOINTS):
        collector.add(base + 1e-3 * torch.randn(view.dim, generator=gen))
    vector_bytes = view.dim * 4
    assert vector_bytes > 4 * PICKLE_SLACK  # one vector more or less shows above the framing
    return collector, vector_bytes


@pytest.mark.parametrize(
    ("form", "vectors"),
    [
        ("subspace", CHECKPOINTS + 2),  # basis rows, running sum, w₁ (the anchor, once)
        ("layerwise", CHECKPOINTS + 1),  # raw rows (w₁'s is `first` itself), running sum
    ],
)
def test_collection_state_holds_the_first_checkpoint_once(form, vectors):
    collector, vector_bytes = _collector(form)
    saved = _saved_bytes(collector.state_dict())
    assert vectors * vector_bytes <= saved < vectors * vector_bytes + PICKLE_SLACK
    if form == "subspace":
        assert collector.first is collector.basis.anchor
    else:
        assert collector.raw_rows[0] is collector.first
    restored = Collector(collector.view, collector.config)
    restored.load_state_dict(torch.load(io.BytesIO(_state_bytes(collector)), weights_only=True))
    assert _saved_bytes(restored.state_dict()) == saved
    assert restored.spread == pytest.approx(collector.spread)


def _state_bytes(collector: Collector) -> bytes:
    buffer = io.BytesIO()
    torch.save(collector.state_dict(), buffer)
    return buffer.getvalue()


def test_twa_phase_frees_the_anchor():
    collector, vector_bytes = _collector("subspace")
    solver = collector.build(total_steps=2)
    saved = _saved_bytes(solver.state_dict())  # before any step: no momentum yet
    assert (CHECKPOINTS + 1) * vector_bytes <= saved < (CHECKPOINTS + 1) * vector_bytes + PICKLE_SLACK  # rows, centre
    with pytest.raises(Exception, match="sealed"):
        collector.basis.add(collector.average)


@contextmanager
def _host_reads() -> Iterator[list[str]]:
    """Counts the calls that copy a tensor's value to the host (each one waits for an accelerator)."""
    calls: list[str] = []
    originals = {name: getattr(torch.Tensor, name) for name in ("__float__", "item", "tolist", "cpu")}

    def counting(name):
        def wrapper(self, *args, **kwargs):
            calls.append(name)
            return originals[name](self, *args, **kwargs)

        return wrapper

    for name in originals:
        setattr(torch.Tensor, name, counting(name))
    try:
        yield calls
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


def test_a_projection_reads_nothing_back_and_a_step_once():
    collector, _ = _collector("subspace")
    basis: SubspaceBasis = collector.basis
    vector = torch.randn(basis.dim)
    with _host_reads() as calls:
        projected = basis.project(vector)
    assert calls == []
    rows = torch.stack(basis.rows)
    torch.testing.assert_close(projected, rows.T @ (rows @ vector), atol=1e-5, rtol=0)
    solver = collector.build(total_steps=2)
    assert isinstance(solver, SubspaceTWA)
    solver.radius = 1e-9  # the trust check runs and acts
    solver.view.set_grads(torch.randn(basis.dim))
    with _host_reads() as calls:
        solver.step()
    assert calls == ["__float__"] and solver.confined_steps == 1  # the trust-region norm, nothing per row
