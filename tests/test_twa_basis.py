"""The math of TWA: orthonormal basis, projections, layer-wise coefficients, quantization, memory checks.

Each test would fail if the corresponding piece were wrong: a non-orthonormal basis, a projection leaving
the span, a wrong coefficient gradient, a solver that does not find the best point of the span.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hf_efftrain.errors import BasisMemoryError, TWAError
from hf_efftrain.log import get_logger
from hf_efftrain.twa import (
    BasisPlan,
    LayerwiseBasis,
    SubspaceBasis,
    TrainableView,
    TWAConfig,
    dequantize,
    quantize_blocks,
    recompute_norm_statistics,
    train_twa,
)
from hf_efftrain.twa.optimize import lr_factor


def _trajectory(k: int = 5, dim: int = 4000, spread: float = 1e-3, seed: int = 0) -> list[torch.Tensor]:
    """Fine-tuning-like checkpoints: a large common vector plus small random moves (nearly parallel)."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(dim, generator=gen)
    return [base + spread * torch.randn(dim, generator=gen) for _ in range(k)]


def test_basis_is_orthonormal_and_spans_nearly_parallel_checkpoints():
    checkpoints = _trajectory()
    basis = SubspaceBasis(dim=4000)
    for theta in checkpoints:
        assert basis.add(theta)
    rows = torch.stack(basis.rows).double()
    assert torch.allclose(rows @ rows.T, torch.eye(5, dtype=torch.float64), atol=1e-5)
    for theta in checkpoints:
        assert torch.allclose(basis.project(theta), theta, atol=1e-5)
    # a direction orthogonal to the span is removed
    outside = torch.randn(4000)
    outside -= basis.project(outside)
    assert basis.project(outside).norm() < 1e-4 * outside.norm()


def test_dependent_checkpoint_is_dropped_with_a_warning(caplog):
    a, b = _trajectory(k=2)
    basis = SubspaceBasis(dim=4000, rank_tol=1e-4)
    basis.add(a)
    basis.add(b)
    logger = get_logger("hf_efftrain.twa")  # hf_efftrain's loggers do not propagate (like transformers')
    logger.addHandler(caplog.handler)
    try:
        kept = basis.add(0.25 * a + 0.75 * b)
    finally:
        logger.removeHandler(caplog.handler)
    assert not kept and basis.size == 2 and basis.dropped == 1
    assert "dropped" in caplog.text


def test_subspace_twa_finds_the_least_squares_optimum_in_the_span():
    torch.manual_seed(0)
    model = nn.Linear(12, 1, bias=False)
    x = torch.randn(64, 12)
    y = x @ torch.randn(12, 1)
    checkpoints = [torch.randn(12) for _ in range(3)]
    # trust=0: the unconstrained problem (this optimum lies far outside the checkpoints' spread)
    config = TWAConfig(form="subspace", steps=300, lr=0.05, momentum=0.9, schedule="constant", trust=0)
    solver = train_twa(model, checkpoints, [x], config, loss_fn=lambda m, b: ((m(b) - y) ** 2).mean())
    # closed form: θ = C a with a = argmin ‖X C a − y‖
    span = torch.stack(checkpoints, dim=1)
    coeffs = torch.linalg.lstsq(x @ span, y).solution
    assert torch.allclose(model.weight.detach().reshape(-1), (span @ coeffs).reshape(-1), atol=1e-3)
    assert solver.basis.size == 3


def test_layerwise_coefficient_gradient_matches_autograd():
    gen = torch.Generator().manual_seed(1)
    sizes = [6, 10]
    raws = {i: torch.randn(16, generator=gen) for i in range(3)}
    centre = torch.stack(list(raws.values())).mean(0)
    basis = LayerwiseBasis(centre, dict(raws), sizes)
    assert torch.equal(basis.weights(torch.zeros(3, 2)), centre)
    target = torch.randn(16, generator=gen)
    x = torch.randn(3, 2, generator=gen, requires_grad=True)
    scaled = x * basis.norms
    theta = centre + sum(basis.row(i) * scaled[i].repeat_interleave(torch.tensor(sizes)) for i in range(3))
    loss = ((theta - target) ** 2).sum()
    loss.backward()
    grad_theta = 2 * (theta.detach() - target)
    assert torch.allclose(basis.coefficient_grad(grad_theta), x.grad, atol=1e-5)
    assert torch.allclose(basis.weights(x.detach()), theta.detach(), atol=1e-6)
    one_hot = torch.zeros(3, 2)
    one_hot[1] = 1.0
    assert torch.allclose(basis.weights(one_hot), raws[1], atol=1e-6)  # X_i = 1 is checkpoint i


def test_layerwise_twa_lowers_the_loss_below_the_plain_average():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1))
    x, y = torch.randn(128, 8), torch.randn(128, 1)
    view = TrainableView(model)
    checkpoints = [view.vector() + 0.3 * torch.randn(view.dim) for _ in range(4)]
    mse = nn.functional.mse_loss
    view.assign(torch.stack(checkpoints).mean(0))
    with torch.no_grad():
        average_loss = float(mse(model(x), y))
    config = TWAConfig(form="layerwise", steps=30, lr=0.1, schedule="cosine")
    train_twa(model, checkpoints, [x], config, loss_fn=lambda m, b: mse(m(b), y))
    with torch.no_grad():
        assert float(mse(model(x), y)) < 0.9 * average_loss


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_quantization_error_and_packing(bits):
    row = torch.randn(1000, generator=torch.Generator().manual_seed(bits))
    sizes = [300, 700]
    q = quantize_blocks(row, sizes, bits)
    error = (dequantize(q) - row).abs().split(sizes)
    for block_error, scale in zip(error, q.scales, strict=True):
        assert float(block_error.max()) <= float(scale) / 2 + 1e-6
    packed = 1000 * bits // 8 if 8 % bits == 0 else 1000
    assert q.codes.numel() == packed


def test_quantized_layerwise_basis_is_smaller_and_close():
    raws = {i: t for i, t in enumerate(_trajectory(k=4, dim=4000, spread=1.0))}
    centre = torch.stack(list(raws.values())).mean(0)
    full = LayerwiseBasis(centre, dict(raws), [1000, 3000])
    four = LayerwiseBasis(centre, dict(raws), [1000, 3000], bits=4)
    assert four.memory_mb < full.memory_mb / 7
    x = torch.full((4, 2), 0.1)
    assert torch.allclose(four.weights(x), full.weights(x), atol=0.1)


def test_memory_plan_reports_and_refuses_before_allocating():
    plan = BasisPlan(dim=1_000_000, checkpoints=10, world=2, rank=1)
    assert plan.rows == 5
    assert plan.basis_mb == pytest.approx(5 * 4e6 / 2**20)
    with pytest.raises(BasisMemoryError, match=r"needs [\d,.]+ MiB per process"):
        plan.check(limit_mb=10)
    plan.check(limit_mb=1000)
    assert BasisPlan(dim=1_000_000, checkpoints=10, bits=4).basis_mb == pytest.approx(plan.basis_mb / 4)


def test_norm_statistics_are_recomputed_for_batchnorm_only():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    data = [torch.randn(32, 4) + 2 for _ in range(3)]
    assert recompute_norm_statistics(model, data)
    features = torch.cat([model[0](b) for b in data]).detach()
    assert torch.allclose(model[1].running_mean, features.mean(0), atol=1e-5)
    assert model[1].momentum == 0.1
    assert not recompute_norm_statistics(nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3)), data)


def test_config_rejects_impossible_schedules():
    with pytest.raises(TWAError, match="does not fit in max_steps"):
        TWAConfig(start=0.9, steps=20).start_step(100)
    with pytest.raises(TWAError, match="twa_bits"):
        TWAConfig(form="subspace", bits=4)
    assert TWAConfig(start=0.5, every=30).collection_steps(100) == [30, 50]
    assert TWAConfig(start=0.5, collect_from=0.25, every=10).collection_steps(100) == [25, 35, 45, 50]
    with pytest.raises(TWAError, match="twa_collect_from"):
        TWAConfig(start=0.5, collect_from=0.75).collection_steps(100)
    assert lr_factor("cosine", 0, 10) == 1.0 and lr_factor("cosine", 10, 10) == pytest.approx(0.0)
