"""LAG selection: identical conditions for every candidate, losses at step 0 and the lags, ranking, report."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset

from hf_efftrain.errors import GrowthError
from hf_efftrain.growth import copy_all, get_mask, grow_depth, interleave, masked_depth
from hf_efftrain.growth.lag import LagResult, select_growth
from hf_efftrain.testing import tiny_model
from hf_efftrain.trainer import EfficientTrainingArguments


def _data(rows: int = 48, seq: int = 12, seed: int = 0) -> Dataset:
    ids = torch.randint(1, 96, (rows, seq), generator=torch.Generator().manual_seed(seed))
    ids[:, 1::2] = ids[:, ::2]  # a learnable copy pattern
    return Dataset.from_dict({"input_ids": ids.tolist(), "labels": ids.tolist()})


def _args(tmp_path) -> EfficientTrainingArguments:
    return EfficientTrainingArguments(
        output_dir=str(tmp_path), learning_rate=3e-3, per_device_train_batch_size=4, seed=0, use_cpu=True,
        disable_tqdm=True, report_to=[],
    )  # fmt: skip


@pytest.fixture(scope="module")
def source():
    return tiny_model("gpt2", "causal-lm")


def test_identical_candidates_get_identical_curves_and_ranking_follows_lag_loss(source, tmp_path):
    train, held = _data(), _data(8, seed=1)
    candidates = {
        "stack": lambda: grow_depth([source], copy_all(2, 4)),
        "stack_again": lambda: grow_depth([source], copy_all(2, 4)),
        "interleave": lambda: grow_depth([source], interleave(2, 4)),
    }
    result = select_growth(candidates, train, 4, args=_args(tmp_path), eval_dataset=held, lags=[1, 2])
    assert result.lags == [1, 2, 4]
    assert result.losses["stack"] == result.losses["stack_again"]
    assert result.train_curves["stack"] == result.train_curves["stack_again"]
    assert result.losses["stack"] != result.losses["interleave"]
    assert sorted(result.losses["stack"]) == [0, 1, 2, 4]
    at_lag = [result.losses[n][4] for n in result.ranking]
    assert at_lag == sorted(at_lag) and result.pick == result.ranking[0]
    assert len(result.train_curves["interleave"]) == 4
    assert result.losses["stack"][4] < result.losses["stack"][0]  # it trained
    folder = result.save(tmp_path / "report")
    assert (folder / "lag_curves.png").stat().st_size > 1000
    assert f"pick: **{result.pick}**" in (folder / "lag_report.md").read_text()
    assert LagResult.load(folder).losses == result.losses
    assert [row["candidate"] for row in result.table()] == result.ranking


def test_lag_uses_the_full_schedule_and_stops_at_the_lag(source, tmp_path):
    train = _data()
    short = select_growth({"s": lambda: grow_depth([source], copy_all(2, 3))}, train, 3, args=_args(tmp_path))
    longer = select_growth(
        {"s": lambda: grow_depth([source], copy_all(2, 3))}, train, 3, args=_args(tmp_path), schedule_steps=30
    )
    assert len(longer.train_curves["s"]) == 3 and longer.metric == "training loss"
    assert short.train_curves["s"][0] == longer.train_curves["s"][0]  # same data and weights at step 0
    assert short.train_curves["s"][2] != longer.train_curves["s"][2]  # different learning-rate schedule


def test_masked_candidate_ramps_its_mask_during_the_lag(source, tmp_path):
    grown = masked_depth(source, copy_all(2, 4), ramp_steps=3)
    select_growth({"msg": grown}, _data(), 4, args=_args(tmp_path))
    assert get_mask(grown) is None  # ramp finished at step 3: hooks removed


def _record_devices(monkeypatch) -> list:
    """Replace the training of a candidate by a record of the device its Trainer would use."""
    from hf_efftrain.growth import lag

    seen = []

    def fake_train(model, train_dataset, args, lags, stop, *rest):
        seen.append(args.device)
        probe = lag._LagProbe((), stop)
        probe.train = [1.0] * stop
        return probe

    monkeypatch.setattr(lag, "train_candidate", fake_train)
    return seen


def _pretend_one_gpu(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)


@pytest.fixture
def fresh_accelerate_state():
    """Device set-up is process-wide (accelerate's state): leave none behind for the next test."""
    from accelerate.state import AcceleratorState

    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_lag_trains_on_the_device_training_arguments_choose(source, monkeypatch, fresh_accelerate_state):
    seen = _record_devices(monkeypatch)
    select_growth({"s": source}, _data(), 2)  # default arguments: the Trainer's choice, the CPU on this machine
    assert seen == [EfficientTrainingArguments(output_dir="unused", report_to=[]).device] == [torch.device("cpu")]
    _pretend_one_gpu(monkeypatch)
    select_growth({"s": source}, _data(), 2)  # a visible GPU is used, as a Trainer would
    select_growth({"s": source}, _data(), 2, device="cpu")  # unless the caller says otherwise
    assert seen[1:] == [torch.device("cuda:0"), torch.device("cpu")]


def test_lag_device_override_checks_against_the_given_arguments(source, tmp_path, monkeypatch, fresh_accelerate_state):
    seen = _record_devices(monkeypatch)
    args = _args(tmp_path)  # use_cpu=True
    select_growth({"s": source}, _data(), 2, args=args)
    assert seen == [torch.device("cpu")]
    built = []
    with pytest.raises(GrowthError, match="asked to train on cuda"):  # no GPU here: refused before any candidate
        select_growth({"s": lambda: built.append(1)}, _data(), 2, args=args, device="cuda")
    assert built == []
    _pretend_one_gpu(monkeypatch)
    select_growth({"s": source}, _data(), 2, args=args, device="cuda")
    assert seen[1:] == [torch.device("cuda:0")] and args.use_cpu  # the caller's arguments are left alone
    with pytest.raises(GrowthError, match="not a torch device"):
        select_growth({"s": source}, _data(), 2, args=args, device="gpu-please")
