"""``build_report``: one run folder in, one report folder (a page and its PNGs) out.

The folder is written atomically: figures and page go to a temporary sibling that replaces ``out_dir`` only
when everything succeeded, so an error (a corrupt JSON file, a failing plot) never leaves half a report and
never destroys the previous one. Only an earlier, untouched report is ever replaced: a folder holding anything
else, the run folder itself or a folder holding it are refused (:mod:`hf_efftrain.outputs`). Example::

    page = build_report("outputs/finetune")                   # outputs/finetune/report/report.html
    page = build_report("outputs/run", fmt="markdown", out_dir="docs/run")
"""

from __future__ import annotations

import os
from pathlib import Path

from hf_efftrain.log import get_logger
from hf_efftrain.outputs import check_output, output_directory
from hf_efftrain.report.collect import collect_run
from hf_efftrain.report.page import Page
from hf_efftrain.report.render import page_file, render
from hf_efftrain.report.sections import build_sections

logger = get_logger(__name__)


def build_report(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None, fmt: str = "html") -> Path:
    """Write ``report.html`` or ``report.md`` with its figures into ``out_dir`` (default ``<run_dir>/report``).

    Returns the page's path. Raises :class:`~hf_efftrain.errors.ReportError` for a missing run folder, one with
    nothing to report, a corrupt JSON file or an unknown format.
    """
    name = page_file(fmt)
    out_dir = Path(out_dir) if out_dir is not None else Path(run_dir) / "report"
    # a report is a view of the run: its own earlier page is regenerated, nothing else is ever replaced
    check_output(out_dir, "report", inputs=[run_dir], overwrite=True)
    run = collect_run(run_dir)
    with output_directory(out_dir, "report") as tmp:
        page = Page(f"Training report: {Path(run_dir).resolve().name}", build_sections(run, tmp))
        (tmp / name).write_text(render(page, fmt), encoding="utf-8")
    used = [s.title.split(" ")[0] for s in page.sections[1:] if s.used]
    logger.info("report: %s (methods: %s)", out_dir / name, ", ".join(used) or "none")
    return out_dir / name
