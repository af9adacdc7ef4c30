"""What a report page says, independent of its format: sections of text, key-value tables and images.

:mod:`sections` fills a :class:`Page` from a run; :mod:`render` writes it as Markdown or HTML, so both formats
always show the same content. Numbers are formatted once, here. Example::

    Page("Run report", [Section("MAT", [Text("3 of 8 heads active"), Image("mat_lambda.png", "λmax")])])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Text:
    """A paragraph (Markdown inline syntax; escaped in HTML)."""

    text: str


@dataclass(frozen=True)
class Table:
    """Rows of cells under ``headers`` (all strings: formatted with :func:`cell`)."""

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Image:
    """A figure written next to the page: ``file`` relative to the page, shown with its caption."""

    file: str  # relative to the page
    caption: str


Block = Text | Table | Image


@dataclass
class Section:
    """One titled part of the page, usually one method; ``used=False`` renders it as a short greyed note."""

    title: str
    blocks: list[Block] = field(default_factory=list)
    used: bool = True  # False: the run did not use this method; the section is a short note


@dataclass
class Page:
    """The whole report: a title and its sections, rendered by :mod:`~hf_efftrain.report.render`."""

    title: str
    sections: list[Section]


def cell(value: Any) -> str:
    """One table cell: floats with 6 significant digits, lists joined, None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return ", ".join(cell(v) for v in value)
    return str(value)


def key_values(values: dict[str, Any], header: tuple[str, str] = ("quantity", "value")) -> Table:
    """A two-column table from a mapping, in its order."""
    return Table(header, tuple((str(k), cell(v)) for k, v in values.items()))
