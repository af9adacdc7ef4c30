"""Turning a GGUF file into a normal fp32 checkpoint folder, once, so later loads are plain ``from_pretrained``.

Loading a GGUF dequantizes every tensor (~25 s for SmolLM2-135M on 2 cores) and leaves a
``quantization_config`` in the config that ``save_pretrained`` would carry along. So the weights are rebuilt
in a model made ``from_config`` without it and saved with the tokenizer into a cache folder, written
atomically (:func:`hf_efftrain.atomic.atomic_directory`): an interrupted conversion leaves no half folder,
and the next call starts over. Example::

    folder = convert_gguf(Path(".../SmolLM2-135M-Instruct.Q4_1.gguf"), Path("~/.cache/hf_efftrain/smollm2"))
    model = AutoModelForCausalLM.from_pretrained(folder)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from hf_efftrain.atomic import atomic_directory
from hf_efftrain.errors import MissingAssetError

SOURCE_FILE = "gguf_source.json"  # which GGUF a folder was converted from (its path and size)


def _source_record(gguf_file: Path) -> dict[str, object]:
    return {"gguf_file": gguf_file.name, "size": gguf_file.stat().st_size}


def is_converted(gguf_file: Path, folder: Path) -> bool:
    """Whether ``folder`` holds a finished conversion of this very file (same name and size)."""
    record = folder / SOURCE_FILE
    if not (record.is_file() and (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()):
        return False
    try:
        return json.loads(record.read_text(encoding="utf-8")) == _source_record(gguf_file)
    except (OSError, ValueError):
        return False


def convert_gguf(gguf_file: Path, folder: Path, pip_line: str) -> Path:
    """Dequantize ``gguf_file`` into ``folder`` (fp32 weights, config, tokenizer) unless already done there."""
    if is_converted(gguf_file, folder):
        return folder
    try:
        import gguf  # noqa: F401  (transformers reads GGUF files through it)
    except ImportError:
        raise MissingAssetError(f"reading {gguf_file.name} needs the gguf package: run `{pip_line}`") from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = {"pretrained_model_name_or_path": str(gguf_file.parent), "gguf_file": gguf_file.name}
    tokenizer = AutoTokenizer.from_pretrained(**source)
    loaded = AutoModelForCausalLM.from_pretrained(**source, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are dequantized: a reload must not look for a quantizer
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    del loaded
    with atomic_directory(folder) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / SOURCE_FILE).write_text(json.dumps(_source_record(gguf_file)), encoding="utf-8")
    return folder
