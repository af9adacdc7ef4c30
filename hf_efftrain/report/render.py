"""Write a :class:`~hf_efftrain.report.page.Page` as Markdown or as a self-contained HTML page.

Images are referenced by relative path (they sit next to the page), so the report folder can be moved,
zipped or served as is. All text is escaped in HTML (tensor names, metric names and paths come from the run).
Example::

    text = render(page, "html")
"""

from __future__ import annotations

import html

from hf_efftrain.errors import ReportError
from hf_efftrain.report.page import Image, Page, Table, Text

FORMATS = {"html": "report.html", "markdown": "report.md"}

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f2f2f2; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
section.unused { color: #666; }
"""


def page_file(fmt: str) -> str:
    """File name of the page for a format; unknown formats are a user error."""
    if fmt not in FORMATS:
        raise ReportError(f"unknown report format {fmt!r}: use one of {', '.join(FORMATS)}")
    return FORMATS[fmt]


def render(page: Page, fmt: str) -> str:
    """The page as Markdown (``"markdown"``) or HTML (``"html"``)."""
    page_file(fmt)
    return to_html(page) if fmt == "html" else to_markdown(page)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(page: Page) -> str:
    """The page as Markdown (images as links next to the file), for reading on GitHub or in a terminal."""
    lines = [f"# {page.title}", ""]
    for section in page.sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Text):
                lines += [block.text, ""]
            elif isinstance(block, Table):
                lines.append("| " + " | ".join(_md_cell(h) for h in block.headers) + " |")
                lines.append("|" + "---|" * len(block.headers))
                lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
                lines.append("")
            elif isinstance(block, Image):
                lines += [f"![{block.caption}]({block.file})", "", f"*{block.caption}*", ""]
    return "\n".join(lines).rstrip() + "\n"


def _html_block(block: Text | Table | Image) -> str:
    esc = html.escape
    if isinstance(block, Text):
        return f"<p>{esc(block.text)}</p>"
    if isinstance(block, Table):
        head = "".join(f"<th>{esc(h)}</th>" for h in block.headers)
        body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in block.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return (
        f'<figure><img src="{esc(block.file, quote=True)}" alt="{esc(block.caption, quote=True)}">'
        f"<figcaption>{esc(block.caption)}</figcaption></figure>"
    )


def to_html(page: Page) -> str:
    """The page as one self-contained HTML file with its style inlined (images are files next to it)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(page.title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(page.title)}</h1>",
    ]
    for section in page.sections:
        parts.append(f'<section class="{"used" if section.used else "unused"}">')
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        parts += [_html_block(block) for block in section.blocks]
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
