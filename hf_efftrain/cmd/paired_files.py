"""One result stored as two files, a JSON (metadata) and a safetensors (tensors), written with one shared id.

Each file is written atomically, but not both at once: a kill between the two writes leaves a new file beside an
old one. Both writers therefore stamp the same random id into the JSON and into the safetensors header, and
:func:`read_paired` returns both ids so the reader refuses a pair from two different writes. Example::

    stamp = new_stamp()
    write_safetensors(tensor_path, tensors, {"stamp": stamp}); write_json(json_path, {**meta, "stamp": stamp})
    meta, tensors, header = read_paired(json_path, tensor_path)   # header["stamp"] == meta["stamp"]
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any


def new_stamp() -> str:
    """A fresh id for one save."""
    return uuid.uuid4().hex


def read_paired(json_path: Path, tensor_path: Path) -> tuple[Any, dict, dict[str, str]]:
    """(parsed JSON, tensors, safetensors header metadata); ``ValueError`` naming the exception when unreadable."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
        with safe_open(str(tensor_path), framework="pt") as handle:
            header = handle.metadata() or {}
        tensors = load_file(str(tensor_path))
    except Exception as err:  # json and safetensors raise several types for damaged files
        raise ValueError(f"{type(err).__name__}: {' '.join(str(err).split())[:200]}") from None
    return meta, tensors, header
