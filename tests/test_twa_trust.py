"""The trust region of the TWA phase: a learning rate far too large no longer throws the weights away.

Without it, projected momentum SGD with lr 50 leaves the region of the checkpoints and the loss explodes
(what happened on one seed of the first MiniLM benchmark); with the default ``trust=1`` the weights stay
within one RMS spread of the plain average and the loss stays near the checkpoints'.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hf_efftrain.errors import TWAError
from hf_efftrain.twa import TrainableView, TWAConfig, train_twa
from hf_efftrain.twa.collect import Collector


def _problem():
    """A small noisy regression net, checkpoints scattered around a trained point, and its loss."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
    x = torch.randn(256, 8)
    y = torch.sin(x[:, :1]) + 0.3 * torch.randn(256, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(100):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
    view = TrainableView(model)
    checkpoints = [view.vector() + 0.05 * torch.randn(view.dim) for _ in range(5)]

    def loss_fn(m, batch):
        return nn.functional.mse_loss(m(batch), y)

    def loss_at(theta):
        view.assign(theta)
        with torch.no_grad():
            return float(loss_fn(model, x))

    return model, view, x, checkpoints, loss_fn, loss_at


@pytest.mark.parametrize("form", ["subspace", "layerwise"])
def test_too_large_lr_diverges_without_trust_region_and_not_with_it(form):
    model, view, x, checkpoints, loss_fn, loss_at = _problem()
    worst = max(loss_at(c) for c in checkpoints)
    average = torch.stack(checkpoints).mean(0)
    lr = 50.0 if form == "subspace" else 20.0
    config = TWAConfig(form=form, steps=20, lr=lr, schedule="constant", trust=0)
    train_twa(model, checkpoints, [x], config, loss_fn=loss_fn)
    assert loss_at(view.vector()) > 3 * worst  # unconstrained: diverged

    solver = train_twa(model, checkpoints, [x], TWAConfig(form=form, steps=20, lr=lr, schedule="constant"), loss_fn)
    final = view.vector()
    spread = torch.stack([(c - average).norm() ** 2 for c in checkpoints]).mean().sqrt()
    assert solver.radius == pytest.approx(float(spread), rel=1e-4)  # default trust = 1 spread
    assert float((final - average).norm()) <= solver.radius * (1 + 1e-4)
    assert solver.confined_steps > 0
    assert loss_at(final) < 1.5 * worst


def test_trust_region_does_not_change_a_well_tuned_run():
    model, view, x, checkpoints, loss_fn, loss_at = _problem()
    config = TWAConfig(form="subspace", steps=10, lr=1e-3, schedule="constant", trust=100)
    solver = train_twa(model, checkpoints, [x], config, loss_fn)
    constrained = view.vector()
    train_twa(
        model, checkpoints, [x], TWAConfig(form="subspace", steps=10, lr=1e-3, schedule="constant", trust=0), loss_fn
    )
    assert solver.confined_steps == 0 and torch.equal(constrained, view.vector())


def test_spread_is_exact_for_nearly_parallel_float32_checkpoints():
    gen = torch.Generator().manual_seed(3)
    base = 100 * torch.randn(50_000, generator=gen)  # ‖w‖² ~ 5e8: a naive Σ‖w‖² − n‖w̄‖² loses every digit
    checkpoints = [base + 1e-3 * torch.randn(50_000, generator=gen) for _ in range(4)]
    view = TrainableView(nn.Linear(1, 1))
    view.dim, view.device = 50_000, torch.device("cpu")
    collector = Collector(view, TWAConfig(form="layerwise"))
    for theta in checkpoints:
        collector.add(theta)
    stacked = torch.stack(checkpoints).double()
    exact = float((stacked - stacked.mean(0)).norm(dim=1).pow(2).mean().sqrt())
    assert collector.spread == pytest.approx(exact, rel=1e-3)


def test_negative_trust_is_rejected():
    with pytest.raises(TWAError, match="twa_trust"):
        TWAConfig(trust=-1)


@pytest.mark.parametrize("form", ["subspace", "layerwise"])
def test_init_last_starts_at_the_last_checkpoint_and_centres_the_trust_region_there(form):
    model, view, x, checkpoints, loss_fn, loss_at = _problem()
    collector = Collector(view, TWAConfig(form=form, init="last", steps=5))
    for theta in checkpoints:
        collector.add(theta)
    collector.build(total_steps=5)
    torch.testing.assert_close(view.vector(), checkpoints[-1], atol=1e-6, rtol=0)

    lr = 50.0 if form == "subspace" else 20.0  # far too large: every step ends on the trust boundary
    config = TWAConfig(form=form, init="last", steps=10, lr=lr, schedule="constant")
    solver = train_twa(model, checkpoints, [x], config, loss_fn=loss_fn)
    final = view.vector()
    assert solver.confined_steps > 0
    assert float((final - checkpoints[-1]).norm()) <= solver.radius * (1 + 1e-4)  # around the last, not the average
    centre = solver.centre if form == "subspace" else solver.start_theta
    torch.testing.assert_close(centre, checkpoints[-1], atol=1e-6, rtol=0)


def test_unknown_init_is_rejected():
    with pytest.raises(TWAError, match="twa_init"):
        TWAConfig(init="first")
