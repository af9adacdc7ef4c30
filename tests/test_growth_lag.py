"""LAG selection: identical conditions for every candidate, losses at step 0 and the lags, ranking, report."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset

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
