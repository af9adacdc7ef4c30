"""Online CMD equals a batch least-squares fit with the frozen modes; its state round-trips."""

from __future__ import annotations

import torch
from cmd_tiny import synthetic_trajectory

from hf_efftrain.cmd import OnlineCMD, fit_cmd
from hf_efftrain.trajectory import Trajectory


def test_recursive_updates_equal_the_batch_fit_over_all_snapshots(tmp_path):
    synthetic_trajectory(tmp_path, steps=24, noise=1e-2)
    traj = Trajectory(tmp_path)
    warm = Trajectory([c.folder for c in traj.checkpoints[:8]])
    online = OnlineCMD.from_result(fit_cmd(warm, modes=3, candidates=150))
    for index in range(8, len(traj)):
        online.update(traj.load(index))
    refs = torch.stack([traj.tensor(n).double().reshape(len(traj), -1)[:, i] for n, i in online.reference_ids], 1)
    for name in ("w1", "w2"):
        values = traj.tensor(name).double().reshape(len(traj), -1)
        r = refs[:, online.labels[name].reshape(-1).long()]
        rc, vc = r - r.mean(0), values - values.mean(0)
        a = (rc * vc).sum(0) / (rc**2).sum(0)
        b = values.mean(0) - a * r.mean(0)
        got = online.weights(traj.load(-1))[name].double().reshape(-1)
        torch.testing.assert_close(got, a * refs[-1, online.labels[name].reshape(-1).long()] + b, atol=2e-6, rtol=0)
        # and with noise the fit is not the last point itself: it smooths
        assert not torch.allclose(got, values[-1], atol=1e-4)


def test_forgetting_equals_the_weighted_batch_fit(tmp_path):
    """γ < 1: snapshot t of T weighs γ^(T−t) after the warm-up (warm-up snapshots share the weight of the first
    update's predecessor); the recursive fit equals that weighted least-squares fit, and follows θ(T) closer."""
    synthetic_trajectory(tmp_path, steps=24, noise=1e-2)
    traj = Trajectory(tmp_path)
    warm, gamma = 8, 0.8
    result = fit_cmd(Trajectory([c.folder for c in traj.checkpoints[:warm]]), modes=3, candidates=150)
    online, plain = OnlineCMD.from_result(result, forgetting=gamma), OnlineCMD.from_result(result)
    for index in range(warm, len(traj)):
        online.update(traj.load(index))
        plain.update(traj.load(index))
    later = len(traj) - warm
    weights = torch.tensor(
        [gamma**later] * warm + [gamma ** (later - 1 - i) for i in range(later)], dtype=torch.float64
    )
    refs = torch.stack([traj.tensor(n).double().reshape(len(traj), -1)[:, i] for n, i in online.reference_ids], 1)
    for name in ("w1", "w2"):
        values = traj.tensor(name).double().reshape(len(traj), -1)
        r = refs[:, online.labels[name].reshape(-1).long()]
        w = weights[:, None] / weights.sum()
        rc, vc = r - (w * r).sum(0), values - (w * values).sum(0)
        a = (w * rc * vc).sum(0) / (w * rc**2).sum(0)
        b = (w * values).sum(0) - a * (w * r).sum(0)
        got = online.weights(traj.load(-1))[name].double().reshape(-1)
        torch.testing.assert_close(got, a * r[-1] + b, atol=2e-6, rtol=0)
        smooth = plain.weights(traj.load(-1))[name].double().reshape(-1)
        assert (got - values[-1]).norm() < (smooth - values[-1]).norm()


def test_forgetting_is_saved_with_the_state():
    online = OnlineCMD([("w", 0)], torch.zeros(1), {"w": torch.zeros(3, dtype=torch.uint8)}, forgetting=0.9)
    online.update({"w": torch.tensor([1.0, 2.0, 3.0])})
    online.update({"w": torch.tensor([2.0, 2.5, 3.5])})
    copy = OnlineCMD.from_state(online.state_tensors(), online.reference_ids, frozen=[])
    assert (copy.forgetting, copy.weight, copy.count) == (0.9, online.weight, 2)


def test_state_round_trip_continues_identically(tmp_path):
    synthetic_trajectory(tmp_path, steps=12, noise=1e-2)
    traj = Trajectory(tmp_path)
    online = OnlineCMD.from_result(fit_cmd(Trajectory([c.folder for c in traj.checkpoints[:6]]), 2, 100))
    online.update(traj.load(6))
    copy = OnlineCMD.from_state(online.state_tensors(), online.reference_ids, frozen=[])
    for twin in (online, copy):
        twin.update(traj.load(7))
    for name in traj.names:
        torch.testing.assert_close(copy.coefficients(name), online.coefficients(name), rtol=0, atol=0)


def test_float32_moments_keep_a_slow_motion_under_a_large_weight():
    """Fine-tuning regime, made extreme: weights ~1 moving by ~1e-4 over 300 snapshots, with the reference drifted
    away from the shift (r' in [1, 2]). The float32 moments stay within 1% of the motion of the float64 fit; raw
    float32 sums Σθ, Σr'θ (the old form, without float64) lose several times more to cancellation (measured: ~10x)."""
    gen = torch.Generator().manual_seed(0)
    steps, size = 300, 5000
    r = torch.linspace(0, 1, steps, dtype=torch.float64) ** 2
    a, b = 1e-4 * torch.randn(size, generator=gen, dtype=torch.float64), torch.randn(size, generator=gen)
    noise = 1e-6 * torch.randn(steps, size, generator=gen, dtype=torch.float64)
    thetas = (a[None] * r[:, None] + b.double()[None] + noise).float()  # float32 snapshots, as trained
    online = OnlineCMD([("ref", 0)], torch.tensor([-1.0]), {"w": torch.zeros(size, dtype=torch.uint8)})
    sums = torch.zeros(4, size)  # the raw-sum form in float32: Σθ, Σr'θ (Σr', Σr'² are exact here)
    for t in range(steps):
        online.update({"ref": r[t : t + 1].float(), "w": thetas[t]})
        sums[0] += thetas[t]
        sums[1] += float(r[t] + 1) * thetas[t]
    rc, values = r - r.mean(), thetas.double()
    exact = (rc[:, None] * (values - values.mean(0))).sum(0) / (rc**2).sum() * rc[-1] + values.mean(0)
    predicted = online.weights({"ref": r[-1:].float(), "w": thetas[-1]})["w"].double()
    sum_r, sum_rr = float((r + 1).sum()), float(((r + 1) ** 2).sum())
    a_raw = (steps * sums[1].double() - sum_r * sums[0].double()) / (steps * sum_rr - sum_r**2)
    raw = a_raw * float(r[-1] + 1) + (sums[0].double() - a_raw * sum_r) / steps
    motion = (values[-1] - values[0]).abs().mean()
    # the float32 grid at |θ| ~ 1 is 6e-8 = 0.08% of the motion; 300 rounded mean updates walk a few grid steps
    assert (predicted - exact).abs().mean() < 1e-2 * motion
    assert (raw - exact).abs().mean() > 5 * (predicted - exact).abs().mean()


def test_state_is_nine_bytes_per_parameter_and_reads_the_older_float64_sums(tmp_path):
    synthetic_trajectory(tmp_path, steps=12, noise=1e-2)
    traj = Trajectory(tmp_path)
    online = OnlineCMD.from_result(fit_cmd(Trajectory([c.folder for c in traj.checkpoints[:6]]), 2, 100))
    for index in range(6, 10):
        online.update(traj.load(index))
    tensors = online.state_tensors()
    per_parameter = sum(t.nbytes for k, t in tensors.items() if "." in k)  # label, mean_theta, co_moment per tensor
    assert per_parameter == 9 * sum(t.numel() for t in online.labels.values())  # was 17 with float64 sums
    old = {"shift": online.shift, "count": tensors["count"]}  # the same state as the float64 raw sums saved before
    old["sum_r"] = online.count * online.mean_r
    old["sum_rr"] = online.m2_r + online.count * online.mean_r**2
    for name, labels in online.labels.items():
        old[f"label.{name}"] = labels
        old[f"sum_theta.{name}"] = online.count * online.mean_theta[name].double()
        old[f"sum_rtheta.{name}"] = (
            online.co_moment[name].double() + old["sum_r"][labels.long()] * online.mean_theta[name].double()
        )
    converted = OnlineCMD.from_state(old, online.reference_ids, frozen=[])
    for name in traj.names:
        torch.testing.assert_close(converted.coefficients(name), online.coefficients(name), rtol=1e-6, atol=1e-9)
