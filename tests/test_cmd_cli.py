"""`hf-efftrain cmd fit/summary/reconstruct` on a real (tiny) training trajectory."""

from __future__ import annotations

import pytest
import torch
from cmd_tiny import tiny_trainer
from transformers import AutoModelForSequenceClassification
from typer.testing import CliRunner

from hf_efftrain.cli import app, main
from hf_efftrain.cmd import CMDResult
from hf_efftrain.trajectory import Trajectory


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    trainer = tiny_trainer(out, max_steps=16, snapshot_every=1)
    trainer.train()
    trainer.save_model(str(out))
    return out


def test_fit_writes_result_summary_and_plots_then_reconstruct_saves_a_loadable_model(run):
    runner = CliRunner()
    fitted = runner.invoke(app, ["cmd", "fit", str(run / "snapshots"), str(run / "cmd"), "--modes", "3"])
    assert fitted.exit_code == 0, fitted.output
    assert "relative reconstruction error" in fitted.output and "reference" in fitted.output
    plots = sorted(p.name for p in (run / "cmd/plots").iterdir())
    assert plots == ["correlation.png", "layer_membership.png", "mode_profiles.png", "reconstruction_error.png"]
    assert all((run / "cmd/plots" / p).stat().st_size > 5000 for p in plots)
    result = CMDResult.load(run / "cmd")
    assert result.meta["base_model"] == str(run.resolve()) and result.num_modes == 3
    summary = runner.invoke(app, ["cmd", "summary", str(run / "cmd")])
    assert summary.exit_code == 0 and summary.output.count("\n") == 4

    saved = runner.invoke(app, ["cmd", "reconstruct", str(run / "cmd"), "--step", "7", "--save", str(run / "rec")])
    assert saved.exit_code == 0, saved.output
    model = AutoModelForSequenceClassification.from_pretrained(run / "rec")
    expected = result.reconstruct(7)
    for name, value in model.named_parameters():
        torch.testing.assert_close(value, expected[name])
    truth = Trajectory(run / "snapshots").load(7)
    error = sum(float((expected[n] - truth[n]).norm() ** 2) for n in truth) ** 0.5
    assert error / sum(float(t.norm() ** 2) for t in truth.values()) ** 0.5 < 0.05


def test_user_errors_exit_2_with_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["cmd", "fit", str(tmp_path / "nothing"), str(tmp_path / "out")])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert message.startswith("hf-efftrain: error:") and message.count("\n") == 1
    with pytest.raises(SystemExit) as exit_info:
        main(["cmd", "reconstruct", str(tmp_path), "--step", "1", "--save", str(tmp_path / "x")])
    assert exit_info.value.code == 2
