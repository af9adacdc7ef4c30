"""Output folders that never cost a user their data.

Every command that writes a folder first calls :func:`check_output` (before any expensive work), then writes
through :func:`output_directory`, which builds the whole folder beside its target and swaps it in at once,
with a manifest (``.hf_efftrain.json``) naming the command and every file it wrote. The rules:

- a missing or empty location is written;
- a location holding an earlier, untouched output of the *same* command is replaced only with ``overwrite``;
- anything else (files hf_efftrain did not write, another command's output, an output edited since) is
  refused, ``overwrite`` or not: hf_efftrain only ever removes what it wrote itself;
- an output equal to or holding one of the command's inputs is refused, and so is one that would become part of
  an input (a ``checkpoint-N``/``snapshot-N`` folder of a trajectory, or anything inside one); other folders
  inside an input (``RUN/report``, ``RUN/cmd``) are fine, since no reader of the input looks at them;
- a file, a file as parent, or an unwritable parent is refused before any work.

Example::

    out = check_output("out/grown", command="grow", inputs=recipe.sources, overwrite=False)
    with output_directory(out, command="grow") as tmp:
        model.save_pretrained(tmp)
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hf_efftrain.atomic import atomic_directory, is_dead_leftover
from hf_efftrain.errors import OutputError

MANIFEST_FILE = ".hf_efftrain.json"
MANIFEST_FORMAT = "hf_efftrain.output.v1"


def _files(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` (relative POSIX path → size); the manifest and dead writers' temps left out."""
    sizes = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != MANIFEST_FILE and not is_dead_leftover(path.name):
            sizes[path.relative_to(folder).as_posix()] = path.stat().st_size
    return sizes


def read_manifest(folder: str | os.PathLike) -> dict | None:
    """The manifest of a folder hf_efftrain wrote, or ``None`` (no manifest, or not one of ours)."""
    path = Path(folder) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        return None
    return manifest


def write_manifest(folder: str | os.PathLike, command: str, **extra: str) -> None:
    """Record ``command`` and every file now in ``folder`` (call it last, inside the temporary folder)."""
    from hf_efftrain import __version__

    folder = Path(folder)
    manifest = {"format": MANIFEST_FORMAT, "command": command, "version": __version__, "files": _files(folder)}
    manifest.update(extra)
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def visible_entries(folder: Path) -> list[Path]:
    """The folder's entries, dead writers' temporaries left out (they are ours, and removed on the next write)."""
    return [entry for entry in folder.iterdir() if not is_dead_leftover(entry.name)]


_INPUT_PART = re.compile(r"^(checkpoint|snapshot)-\d+$")  # what trajectory and Trainer readers pick up


def _related(out: Path, source: Path) -> str | None:
    """How writing ``out`` would touch input ``source``, or ``None`` when it would not."""
    if out == source:
        return "is"
    if source.is_relative_to(out):
        return "holds"
    if out.is_relative_to(source) and any(_INPUT_PART.match(part) for part in out.relative_to(source).parts):
        return "would become part of"
    return None


def check_inputs(out: Path, inputs: Iterable[str | os.PathLike | None]) -> None:
    """Refuse an output that is, holds, or would become part of one of the inputs."""
    for source in inputs:
        if source is None or not Path(source).exists():
            continue  # Hub ids and missing paths cannot be overwritten by a local write
        relation = _related(out, Path(source).resolve())
        if relation is None:
            continue
        raise OutputError(
            f"output {out} {relation} the input {source}: writing it would destroy the input; choose another folder"
        )


def check_writable(out: Path) -> None:
    """Refuse an output that is a file, sits under a file, or whose nearest existing parent cannot be written."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"output {out} is a file; give a folder path (nothing was written)")
    parent = out if out.exists() else out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"output {out} cannot be created: {parent} is a file (nothing was written)")
    try:
        with tempfile.TemporaryFile(dir=parent, prefix=".hf_efftrain-probe-"):
            pass
    except OSError as err:
        raise OutputError(f"output {out} cannot be written: {parent}: {err.strerror} (nothing was written)") from None


def check_output(
    path: str | os.PathLike,
    command: str,
    inputs: Iterable[str | os.PathLike | None] = (),
    overwrite: bool = False,
    flag: str = "--overwrite",
) -> Path:
    """Validate an output folder before any work; returns it as a ``Path``. See the module docstring."""
    out = Path(path).expanduser()
    resolved = out.resolve()
    check_inputs(resolved, inputs)
    check_writable(out)
    if not out.is_dir() or not visible_entries(out):
        return out
    manifest = read_manifest(out)
    if manifest is None:
        raise OutputError(
            f"output {out} already holds files hf-efftrain did not write; choose a new or empty folder "
            f"({flag} only ever replaces an earlier output of the same command)"
        )
    if manifest.get("command") != command:
        raise OutputError(
            f"output {out} holds the output of `{manifest.get('command')}`, not of `{command}`; choose another folder"
        )
    if _files(out) != manifest.get("files"):
        raise OutputError(
            f"output {out} holds an earlier `{command}` output that was changed since; "
            "move what you want to keep and choose another folder"
        )
    if not overwrite:
        raise OutputError(f"output {out} holds an earlier `{command}` output; pass {flag} to replace it")
    return out


@contextmanager
def output_directory(path: str | os.PathLike, command: str) -> Iterator[Path]:
    """Build the output in a temporary sibling; on success it gets its manifest and replaces ``path`` whole."""
    with atomic_directory(path) as tmp:
        yield tmp
        write_manifest(tmp, command)
