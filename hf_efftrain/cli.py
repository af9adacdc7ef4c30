"""The ``hf-efftrain`` command. Each method adds its sub-commands here as a typer sub-app.

User errors (:class:`HfEfftrainError`) print one line on stderr and exit with code 2, no traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from hf_efftrain import __version__
from hf_efftrain.cmd.cli import cmd_app
from hf_efftrain.entrypoint import run_main
from hf_efftrain.errors import ArgumentsError
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
    rich_markup_mode=None,  # plain click errors: "Error: ..." on one line, no box drawing in logs
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


VERBOSITY = {"debug": 10, "info": 20, "warning": 30, "error": 40}


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    verbosity: str | None = typer.Option(
        None, "--verbosity", help="debug, info, warning or error (default: transformers' own, i.e. warning)."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Draw progress bars."),
) -> None:
    """Cheaper training and fine-tuning for Hugging Face Transformers."""
    if verbosity is None and progress:
        return  # nothing to set: `hf-efftrain <cmd> --help` must not import transformers
    from transformers.utils import logging as transformers_logging

    if verbosity is not None:
        if verbosity not in VERBOSITY:
            raise typer.BadParameter(f"choose one of {', '.join(VERBOSITY)}", param_hint="--verbosity")
        transformers_logging.set_verbosity(VERBOSITY[verbosity])  # hf_efftrain's logger follows it
    if not progress:
        transformers_logging.disable_progress_bar()  # hf_efftrain's bars follow it


@trajectory_app.command("info")
def trajectory_info(
    folder: Path = typer.Argument(..., metavar="FOLDER", help="Folder holding checkpoint-N/ or snapshot-N/."),
) -> None:
    """List the checkpoints of a trajectory: steps, tensors, parameters, size on disk."""
    from hf_efftrain.trajectory import Trajectory

    traj = Trajectory(folder)
    size = sum(f.stat().st_size for c in traj.checkpoints for f in c.files)
    typer.echo(f"checkpoints: {len(traj)}")
    typer.echo(f"steps: {', '.join(map(str, traj.steps))}")
    typer.echo(f"tensors: {len(traj.names)}  parameters per checkpoint: {traj.num_parameters:,}")
    typer.echo(f"size on disk: {size / 2**20:.1f} MiB")


def _run_app(args: list[str]) -> None:
    """The app, with click's usage errors (unknown option, bad value, missing argument) as one-line user errors.

    Help for a bare command group (``hf-efftrain cmd``) is still printed in full; ``--help`` and ``--version``
    exit 0 as before.
    """
    try:
        code = app(args=args, prog_name="hf-efftrain", standalone_mode=False)
    except typer.Abort:
        print("Aborted!", file=sys.stderr)
        sys.exit(1)
    except typer.TyperException as err:  # click's exceptions (typer ships its own click)
        if type(err).__name__ == "NoArgsIsHelpError":
            err.show()
            sys.exit(err.exit_code)
        command = err.ctx.command_path if getattr(err, "ctx", None) else "hf-efftrain"
        raise ArgumentsError(f"{err.format_message()} (see `{command} --help`)") from None
    sys.exit(code if isinstance(code, int) else 0)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: usage and user errors become one line on stderr and exit code 2."""
    run_main(_run_app, argv, prog="hf-efftrain")


if __name__ == "__main__":
    main()
