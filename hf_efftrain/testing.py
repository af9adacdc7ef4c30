"""Tiny random models of every registered family, for tests and quick experiments.

They are built from configs in code, so nothing is downloaded. Example::

    model = tiny_model("llama", task="causal-lm")     # GQA, head_dim != hidden/heads
    batch = tiny_inputs(model)
    tokenizer = tiny_tokenizer()                      # word ``t07`` is token id 7
"""

from __future__ import annotations

import torch
import transformers as tf

TINY_FAMILIES = ("bert", "roberta", "distilbert", "gpt2", "llama", "mistral", "qwen2", "vit")
VOCAB = 96


def tiny_config(family: str, layers: int = 2, **overrides) -> tf.PretrainedConfig:
    """A 2-layer, 4-head config of ``family``; Llama-family configs use GQA (2 k/v heads, head_dim 8)."""
    common = {
        "hidden_size": 16,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "intermediate_size": 32,
    }
    decoder = {**common, "vocab_size": VOCAB, "num_key_value_heads": 2, "head_dim": 8}
    builders = {
        "bert": lambda: tf.BertConfig(vocab_size=VOCAB, max_position_embeddings=64, **common),
        "roberta": lambda: tf.RobertaConfig(vocab_size=VOCAB, max_position_embeddings=70, **common),
        "distilbert": lambda: tf.DistilBertConfig(
            vocab_size=VOCAB, dim=16, n_layers=layers, n_heads=4, hidden_dim=32, max_position_embeddings=64
        ),
        "gpt2": lambda: tf.GPT2Config(
            vocab_size=VOCAB,
            n_embd=16,
            n_layer=layers,
            n_head=4,
            n_positions=64,
            bos_token_id=0,
            eos_token_id=0,
        ),
        "llama": lambda: tf.LlamaConfig(max_position_embeddings=64, **decoder),
        "mistral": lambda: tf.MistralConfig(max_position_embeddings=64, sliding_window=None, **decoder),
        "qwen2": lambda: tf.Qwen2Config(max_position_embeddings=64, **decoder),
        "vit": lambda: tf.ViTConfig(image_size=8, patch_size=4, num_channels=3, **common),
    }
    if family not in builders:
        raise KeyError(f"no tiny config for {family!r}; choose from {', '.join(TINY_FAMILIES)}")
    config = builders[family]()
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def tiny_model(family: str, task: str = "base", seed: int = 0, **config_overrides) -> tf.PreTrainedModel:
    """A randomly initialized tiny model in eval mode; ``task`` is base, classification or causal-lm/masked-lm."""
    config = tiny_config(family, **config_overrides)
    auto = {
        "base": tf.AutoModel,
        "classification": tf.AutoModelForSequenceClassification,
        "image-classification": tf.AutoModelForImageClassification,
        "causal-lm": tf.AutoModelForCausalLM,
        "masked-lm": tf.AutoModelForMaskedLM,
    }[task]
    if task in ("classification", "image-classification"):
        config.num_labels = 2
        config.pad_token_id = 0
    torch.manual_seed(seed)
    return auto.from_config(config).eval()


def tiny_inputs(model: tf.PreTrainedModel, batch: int = 2, seq: int = 7, seed: int = 1) -> dict[str, torch.Tensor]:
    """A deterministic input batch that fits ``model`` (pixel values for ViT, token ids otherwise)."""
    gen = torch.Generator().manual_seed(seed)
    if model.config.model_type == "vit":
        size = model.config.image_size
        return {"pixel_values": torch.randn(batch, model.config.num_channels, size, size, generator=gen)}
    return {"input_ids": torch.randint(1, VOCAB, (batch, seq), generator=gen)}


def tiny_tokenizer() -> tf.PreTrainedTokenizerFast:
    """A word-level tokenizer over the tiny models' vocabulary: word ``t07`` is id 7 (t00 pad, t01 unk, t02 eos).

    Trainers that pad or save (TRL's ``SFTTrainer``, the example scripts) need a real tokenizer object. Words have
    two digits so that no special token is the prefix of another word (added tokens are split out of words first).
    """
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(WordLevel({f"t{i:02d}": i for i in range(VOCAB)}, unk_token="t01"))
    backend.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="t00", eos_token="t02", unk_token="t01")
