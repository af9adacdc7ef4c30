"""Quiet by default: warnings that do not concern the user are prevented at their cause, and only process 0
draws preparation bars."""

from __future__ import annotations

import logging
import types

import pytest
from datasets import Dataset
from transformers import AutoModelForMaskedLM
from transformers.utils import logging as transformers_logging

from hf_efftrain import EfficientTrainingArguments
from hf_efftrain.loading import LOAD_REPORT_LOGGER, from_pretrained_with_head
from hf_efftrain.log import preparation_output
from hf_efftrain.testing import tiny_model


@pytest.fixture
def transformers_records():
    """Records of transformers' model-loading logger (its own handler writes to a stream pytest cannot see)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger(LOAD_REPORT_LOGGER)
    logger.addHandler(handler)
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_warning()
    yield records
    logger.removeHandler(handler)
    transformers_logging.set_verbosity(verbosity)


def test_no_pin_memory_without_accelerator(tmp_path, monkeypatch):
    monkeypatch.setattr("hf_efftrain.trainer._has_accelerator", lambda: False)
    assert not EfficientTrainingArguments(str(tmp_path), report_to="none").dataloader_pin_memory
    monkeypatch.setattr("hf_efftrain.trainer._has_accelerator", lambda: True)
    assert EfficientTrainingArguments(str(tmp_path), report_to="none").dataloader_pin_memory


def test_new_head_loads_without_transformers_report(tmp_path, transformers_records):
    tiny_model("bert").save_pretrained(tmp_path)  # a base checkpoint: no MLM head
    AutoModelForMaskedLM.from_pretrained(tmp_path)
    assert any("LOAD REPORT" in r.getMessage() for r in transformers_records)  # what users saw before
    transformers_records.clear()
    model = from_pretrained_with_head(AutoModelForMaskedLM, str(tmp_path))
    assert type(model).__name__ == "BertForMaskedLM" and transformers_records == []


def test_missing_body_weights_are_still_reported(tmp_path, capsys, transformers_records):
    tiny_model("bert").save_pretrained(tmp_path)
    model = from_pretrained_with_head(AutoModelForMaskedLM, str(tmp_path), num_hidden_layers=3)  # layer 2 is new
    assert model.config.num_hidden_layers == 3
    err = capsys.readouterr().err
    assert "body weights missing" in err and "encoder.layer.2." in err


@pytest.mark.parametrize(
    ("process_index", "disable_tqdm", "drawn"), [(0, False, True), (1, False, False), (0, True, False)]
)
def test_map_bars_only_on_process_zero_and_without_disable_tqdm(capsys, process_index, disable_tqdm, drawn):
    args = types.SimpleNamespace(
        process_index=process_index, disable_tqdm=disable_tqdm, get_process_log_level=lambda: logging.WARNING
    )
    with preparation_output(args):
        Dataset.from_dict({"x": list(range(4))}).map(lambda row: row, desc="tokenizing")
    assert ("tokenizing" in capsys.readouterr().err) is drawn


def test_growth_puts_an_mlm_head_on_a_base_checkpoint_quietly(tmp_path, transformers_records):
    from hf_efftrain.growth.grow import load_sources
    from hf_efftrain.growth.recipe import GrowthRecipe

    tiny_model("bert").save_pretrained(tmp_path)  # like MiniLM: a BertModel, no MLM head
    recipe = GrowthRecipe([str(tmp_path)], [{"depth": {"strategy": "copy_all", "target_layers": 4}}], task="masked-lm")
    (model,) = load_sources(recipe)
    assert type(model).__name__ == "BertForMaskedLM"
    assert transformers_records == []  # was a LOAD REPORT and "This checkpoint seem corrupted" (tied decoder bias)
