"""The ``hf-efftrain`` command. Each method adds its sub-commands here as a typer sub-app.

User errors (:class:`HfEfftrainError`) print one line on stderr and exit with code 2, no traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from hf_efftrain import __version__
from hf_efftrain.cmd.cli import cmd_app
from hf_efftrain.errors import HfEfftrainError
from hf_efftrain.growth.cli import growth_app
from hf_efftrain.mat import cli as mat_cli
from hf_efftrain.report.cli import report as report_command
from hf_efftrain.transfer.cli import transfer as transfer_command
from hf_efftrain.twa.cli import twa_app

app = typer.Typer(
    name="hf-efftrain",
    help="Cheaper training and fine-tuning for Hugging Face Transformers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
trajectory_app = typer.Typer(help="Inspect checkpoint sequences (Trainer checkpoint-N/ or snapshot-N/ folders).")
app.add_typer(trajectory_app, name="trajectory")
app.add_typer(growth_app)  # top-level `grow` and `lag` commands
app.add_typer(mat_cli.app, name="mat")
app.command("transfer")(transfer_command)
app.add_typer(twa_app, name="twa")
app.add_typer(cmd_app, name="cmd")
app.command("report")(report_command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hf-efftrain {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Cheaper training and fine-tuning for Hugging Face Transformers."""


@trajectory_app.command("info")
def trajectory_info(
    folder: Path = typer.Argument(..., help="Folder holding checkpoint-N/ or snapshot-N/."),
) -> None:
    """List the checkpoints of a trajectory: steps, tensors, parameters, size on disk."""
    from hf_efftrain.trajectory import Trajectory

    traj = Trajectory(folder)
    size = sum(f.stat().st_size for c in traj.checkpoints for f in c.files)
    typer.echo(f"checkpoints: {len(traj)}")
    typer.echo(f"steps: {', '.join(map(str, traj.steps))}")
    typer.echo(f"tensors: {len(traj.names)}  parameters per checkpoint: {traj.num_parameters:,}")
    typer.echo(f"size on disk: {size / 2**20:.1f} MiB")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: typer handles usage errors (exit 2); user errors become one line, exit 2."""
    try:
        app(args=argv)
    except HfEfftrainError as err:
        typer.echo(f"hf-efftrain: error: {err}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
