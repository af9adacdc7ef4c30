"""Run reports: ``build_report(run_dir)`` turns a run's logged method state into an HTML or Markdown page with PNGs.

Modules: :mod:`collect` (find and load a run's files), :mod:`figures` (matplotlib PNGs), :mod:`sections`
(what each part of the page says), :mod:`page` (the format-free page), :mod:`render` (Markdown / HTML),
:mod:`build` (the atomic report folder), :mod:`cli` (``hf-efftrain report``). Example::

    from hf_efftrain.report import build_report
    build_report("outputs/finetune", fmt="markdown")     # outputs/finetune/report/report.md
"""

from hf_efftrain._lazy import lazy_exports

# The CLI imports this package at start-up; matplotlib should load only when a report is built.
__getattr__, __dir__ = lazy_exports(__name__, {"hf_efftrain.report.build": ("build_report",)})

__all__ = ["build_report"]
