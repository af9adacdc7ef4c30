"""hf_efftrain's logger follows transformers' verbosity; its progress bars obey ``disable`` and transformers' switch."""

from __future__ import annotations

import pytest
from transformers.utils import logging as transformers_logging

from hf_efftrain.log import get_logger, progress_bar, progress_enabled


@pytest.fixture
def restore_transformers_logging():
    verbosity, bars = transformers_logging.get_verbosity(), transformers_logging.is_progress_bar_enabled()
    yield
    transformers_logging.set_verbosity(verbosity)
    (transformers_logging.enable_progress_bar if bars else transformers_logging.disable_progress_bar)()


def test_messages_follow_transformers_verbosity(capsys, restore_transformers_logging):
    logger = get_logger("hf_efftrain.mat")
    transformers_logging.set_verbosity_warning()
    logger.info("hidden at warning")
    logger.warning("shown at warning")
    transformers_logging.set_verbosity_info()
    logger.info("shown at info")
    transformers_logging.set_verbosity_error()
    logger.warning("hidden at error")
    err = capsys.readouterr().err
    assert "shown at warning" in err and "shown at info" in err
    assert "hidden" not in err
    assert "[hf_efftrain.mat] INFO: shown at info" in err


def test_loggers_live_under_one_tree():
    assert get_logger("twa").name == "hf_efftrain.twa"
    assert get_logger("hf_efftrain.cmd").parent.name == "hf_efftrain"
    assert len(get_logger().handlers) == 1  # one handler, however often get_logger is called


def test_progress_bars_obey_the_caller_and_transformers(capsys, restore_transformers_logging):
    transformers_logging.enable_progress_bar()
    assert progress_enabled() and not progress_enabled(disable=True)
    list(progress_bar(range(3), desc="drawn", disable=False))
    list(progress_bar(range(3), desc="caller-off", disable=True))
    transformers_logging.disable_progress_bar()
    assert not progress_enabled(disable=False)
    list(progress_bar(range(3), desc="transformers-off"))
    err = capsys.readouterr().err
    assert "drawn" in err and "caller-off" not in err and "transformers-off" not in err


def test_cli_verbosity_and_progress_switches(tmp_path, restore_transformers_logging):
    from typer.testing import CliRunner

    from hf_efftrain.cli import app

    runner = CliRunner()
    bad = runner.invoke(app, ["--verbosity", "loud", "trajectory", "info", str(tmp_path)])
    assert bad.exit_code == 2 and "--verbosity" in bad.output
    runner.invoke(app, ["--verbosity", "error", "--no-progress", "trajectory", "info", str(tmp_path)])
    assert transformers_logging.get_verbosity() == 40 and not progress_enabled()
