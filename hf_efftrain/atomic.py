"""Atomic writes: a reader never sees a half-written file or folder, even if the writer is killed.

Everything is first written to a hidden temporary sibling (``.NAME.<pid>-<random>.tmp``) and then moved into
place. Files use ``os.replace``; an existing folder is swapped with its replacement in one ``renameat2
(RENAME_EXCHANGE)`` call on Linux, so there is no moment at which the target is missing. Where the kernel or
file system cannot exchange, the old folder is first renamed aside (``.NAME.<pid>-<random>.old``) and the
next write to the same place puts it back if the writer died in between. Leftovers of dead writers are removed
by the next write to the same place. Example::

    with atomic_directory("out/model") as tmp:
        model.save_pretrained(tmp)
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _umask() -> int:
    """The process umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)-[^/]*\.(tmp|old)$")


def is_dead_leftover(name: str) -> bool:
    """Whether ``name`` is the temporary file or folder of an atomic write whose process is gone."""
    match = _TEMP_NAME.match(name)
    return bool(match) and not _pid_alive(int(match.group("pid")))


def _leftovers(path: Path) -> list[Path]:
    """Temporary siblings of ``path`` left by writers that died (their process is gone)."""
    if not path.parent.is_dir():
        return []
    found = []
    for entry in path.parent.iterdir():
        match = _TEMP_NAME.match(entry.name)
        if match and match.group("target") == path.name and not _pid_alive(int(match.group("pid"))):
            found.append(entry)
    return found


def clean_leftovers(path: str | os.PathLike) -> None:
    """Restore ``path`` from a dead writer's ``.old`` copy if it went missing, then delete the dead writers' temps."""
    path = Path(path)
    leftovers = _leftovers(path)
    if not path.exists() and not path.is_symlink():
        for old in (p for p in leftovers if p.name.endswith(".old")):
            if (old / path.name).exists():
                os.replace(old / path.name, path)  # the writer died between its two renames
                break
    for entry in leftovers:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _temp_prefix(path: Path) -> str:
    """Hidden, named after the target and the writing process (so a later write knows whether it died)."""
    return f".{path.name}.{os.getpid()}-"


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically (Linux ``renameat2``); ``False`` where that is not supported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it owner-only; a plain open() would not
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it becomes ``path`` (replacing it) only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(path)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it owner-only; a plain mkdir would not
        replace_directory(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)  # after an exchange it holds the old folder


def replace_directory(new: Path, path: Path) -> None:
    """Move folder ``new`` to ``path``; an existing ``path`` ends up at ``new`` (for the caller to delete)."""
    if not path.exists():
        os.replace(new, path)
        return
    if _exchange(new, path):
        return
    old = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".old", dir=path.parent))
    os.replace(path, old / path.name)  # a kill here is repaired by the next write's clean_leftovers
    os.replace(new, path)
    shutil.rmtree(old, ignore_errors=True)


def remove_directory(path: str | os.PathLike) -> None:
    """Delete a folder so that a kill midway never leaves half of it: it is first renamed to a hidden temp name,
    which the next write to the same place removes (a ``.tmp``, never restored like an ``.old``)."""
    path = Path(path)
    aside = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
    os.replace(path, aside / path.name)
    shutil.rmtree(aside, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write pretty JSON atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_safetensors(path: str | os.PathLike, tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> None:
    """Save tensors as safetensors atomically (tensors are made contiguous, storage sharing removed)."""
    from safetensors.torch import save_file

    own = {name: t.detach().contiguous().clone() for name, t in tensors.items()}
    with atomic_file(path) as tmp:
        save_file(own, str(tmp), metadata=metadata)
