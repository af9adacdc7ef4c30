"""Small Markdown writers shared by the generators: tables, escaped cells, docstrings made Markdown."""

from __future__ import annotations

import re
from collections.abc import Sequence

_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|obj|exc|py:\w+):`~?\.?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def cell(value: object) -> str:
    """One table cell: a single line, with ``|`` escaped so it cannot split the row."""
    return " ".join(str(value).split()).replace("|", "\\|")


def code(value: object) -> str:
    """Inline code for a table cell (backticks inside the value are doubled-up safely)."""
    text = cell(value)
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; cells are written as given (escape them with :func:`cell`). Example::

    table(["a", "b"], [[1, 2]])  # '| a | b |\\n|---|---|\\n| 1 | 2 |'
    """
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def docstring_markdown(doc: str) -> str:
    """Turn a reST-flavoured docstring into Markdown: roles and ``literals`` become code, ``::`` blocks fences.

    Our docstrings are written for ``help()`` first; the few reST habits they use are translated here rather
    than pulling in a docstring renderer.
    """
    out: list[str] = []
    lines = _LITERAL.sub(r"`\1`", _ROLE.sub(r"`\1`", doc)).splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.rstrip()
        if stripped.endswith("::"):
            # "Example::" keeps one colon; a bare "::" (or "text ::") introduces the block silently.
            out.append(stripped[:-2].rstrip() if stripped.endswith(" ::") or stripped == "::" else stripped[:-1])
            i, block = _indented_block(lines, i + 1)
            if block:
                out += ["", "```python", *block, "```", ""]
            continue
        out.append(line)
        i += 1
    return "\n".join(out).strip()


def _indented_block(lines: list[str], start: int) -> tuple[int, list[str]]:
    """The indented block that follows a ``::`` line (blank lines inside kept), dedented."""
    i = start
    while i < len(lines) and not lines[i].strip():
        i += 1
    block: list[str] = []
    while i < len(lines) and (not lines[i].strip() or lines[i].startswith((" ", "\t"))):
        block.append(lines[i])
        i += 1
    while block and not block[-1].strip():
        block.pop()
    indent = min((len(b) - len(b.lstrip()) for b in block if b.strip()), default=0)
    return i, [b[indent:] for b in block]
