"""Post-hoc CMD recovers planted modes, streams without changing the answer, and round-trips through disk."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cmd_tiny import synthetic_trajectory

from hf_efftrain.cmd import CMDResult, fit_cmd
from hf_efftrain.cmd.modes import cluster_modes
from hf_efftrain.cmd.sampling import sample_candidates
from hf_efftrain.errors import CMDFitError
from hf_efftrain.trajectory import Trajectory, save_snapshot


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted")
    truth = synthetic_trajectory(root)
    return Trajectory(root), truth


def _same_partition(found: np.ndarray, truth: np.ndarray) -> bool:
    pairs = set(zip(found.tolist(), truth.tolist(), strict=True))
    return len(pairs) == len(set(found.tolist())) == len(set(truth.tolist()))


def test_planted_modes_are_recovered_and_reconstruction_is_near_exact(planted):
    traj, truth = planted
    result = fit_cmd(traj, modes=3, candidates=200, seed=0)
    assert result.num_modes == 3
    for name in ("w1", "w2", "w3"):
        assert _same_partition(result.labels[name].reshape(-1).numpy(), truth[name]["labels"])
    assert result.stats["relative_displacement_error"] < 1e-3
    exact = result.reconstruct(traj.steps[7])
    for name, info in truth.items():
        np.testing.assert_allclose(exact[name].reshape(-1).numpy(), info["values"][7], atol=1e-3)


def test_constant_parameters_get_zero_slope_and_exact_offset(planted):
    traj, truth = planted
    result = fit_cmd(traj, modes=3, candidates=200)
    assert torch.all(result.a["frozen"] == 0)
    np.testing.assert_allclose(result.b["frozen"].numpy(), truth["frozen"]["values"][0], rtol=1e-6)


def test_block_size_does_not_change_the_fit(planted):
    traj, _ = planted
    small = fit_cmd(traj, modes=3, candidates=200, max_elements=700)
    whole = fit_cmd(traj, modes=3, candidates=200, max_elements=None)
    for name in traj.names:
        assert torch.equal(small.labels[name], whole.labels[name])
        torch.testing.assert_close(small.a[name], whole.a[name])
        torch.testing.assert_close(small.b[name], whole.b[name])


def test_between_checkpoints_the_reference_is_interpolated(planted):
    traj, _ = planted
    result = fit_cmd(traj, modes=3, candidates=200)
    left, right, middle = result.reconstruct(10), result.reconstruct(15), result.reconstruct(12.5)
    torch.testing.assert_close(middle["w1"], (left["w1"] + right["w1"]) / 2, rtol=1e-5, atol=1e-6)
    with pytest.raises(CMDFitError, match="outside the fitted range"):
        result.reconstruct(traj.steps[-1] + 1)


def test_save_and_load_round_trip(planted, tmp_path):
    traj, _ = planted
    result = fit_cmd(traj, modes=2, candidates=100)
    loaded = CMDResult.load(result.save(tmp_path / "cmd"))
    assert loaded.steps == result.steps and loaded.reference_ids == result.reference_ids
    assert loaded.summary_rows() == result.summary_rows()
    for name in traj.names:
        torch.testing.assert_close(loaded.reconstruct(33)[name], result.reconstruct(33)[name])
    assert "| mode |" in loaded.summary_markdown()


def test_unusable_inputs_raise_cmd_errors(tmp_path):
    for step in range(2):
        save_snapshot(tmp_path / "short", step, {"w": torch.randn(5, generator=torch.Generator().manual_seed(step))})
    with pytest.raises(CMDFitError, match="at least 3 checkpoints"):
        fit_cmd(Trajectory(tmp_path / "short"), modes=1, candidates=10)
    for step in range(4):
        save_snapshot(tmp_path / "still", step, {"w": torch.ones(5)})
    with pytest.raises(CMDFitError, match="change over"):
        fit_cmd(Trajectory(tmp_path / "still"), modes=2, candidates=10)
    with pytest.raises(CMDFitError, match="no CMD result"):
        CMDResult.load(tmp_path)


def test_sampling_covers_every_tensor_and_clustering_picks_central_references():
    shapes = {"big": (100, 100), "small": (3,), "mid": (40,)}
    picks = sample_candidates(shapes, k=60, seed=1)
    assert set(picks) == set(shapes) and sum(len(p) for p in picks.values()) > 50
    assert all(p.max() < np.prod(shapes[n]) for n, p in picks.items())
    t = np.linspace(0, 1, 20)[:, None]
    values = np.hstack([t * np.arange(1, 6), np.sin(6 * t) * np.arange(1, 4), np.sin(6 * t) + 0.3 * t])
    modes = cluster_modes(values, m=2)
    assert modes.labels.tolist() == [0] * 5 + [1] * 4  # largest mode first
    assert modes.references[1] in (5, 6, 7)  # a pure sine is more central than the mixed column 8
