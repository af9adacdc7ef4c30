"""Run reports: ``build_report(run_dir)`` turns a run's logged method state into an HTML or Markdown page with PNGs.

Modules: :mod:`collect` (find and load a run's files), :mod:`figures` (matplotlib PNGs), :mod:`sections`
(what each part of the page says), :mod:`page` (the format-free page), :mod:`render` (Markdown / HTML),
:mod:`build` (the atomic report folder), :mod:`cli` (``hf-efftrain report``). Example::

    from hf_efftrain.report import build_report
    build_report("outputs/finetune", fmt="markdown")     # outputs/finetune/report/report.md
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_report"]


def __getattr__(name: str) -> Any:
    """Import lazily: the CLI imports this package at start-up, matplotlib should load only when a report is built."""
    if name == "build_report":
        from hf_efftrain.report.build import build_report

        return build_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
