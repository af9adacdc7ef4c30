"""``hf-efftrain report RUN_DIR``: the run's report page, printed as a path. Example::

hf-efftrain report outputs/finetune                  # -> outputs/finetune/report/report.html
hf-efftrain report outputs/run --format markdown --out /tmp/run_report
"""

from __future__ import annotations

from pathlib import Path

import typer


def report(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="A training run's output_dir."),
    fmt: str = typer.Option("html", "--format", help="Page format: html or markdown."),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Report folder (default: RUN_DIR/report); an earlier report there is replaced, other content refused.",
    ),
) -> None:
    """Turn a run's logged state (MAT λmax, active heads, TWA coefficients, CMD modes) into a page with images."""
    from hf_efftrain.report.build import build_report

    typer.echo(str(build_report(run_dir, out, fmt)))
