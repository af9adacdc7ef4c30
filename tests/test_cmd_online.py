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
