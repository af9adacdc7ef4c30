"""``hf-efftrain twa ...``: size a TWA basis for a trajectory before committing memory to it.

Example::

    hf-efftrain twa memory runs/demo/snapshots --world-size 2
"""

from __future__ import annotations

from pathlib import Path

import typer

twa_app = typer.Typer(help="Trainable weight averaging (TWA): basis memory for a trajectory.")


@twa_app.command("memory")
def memory(
    folder: Path = typer.Argument(..., metavar="FOLDER", help="Folder holding checkpoint-N/ or snapshot-N/."),
    world_size: int = typer.Option(1, "--world-size", min=1, help="Processes sharing the basis."),
    bits: int = typer.Option(0, "--bits", min=0, max=8, help="Layer-wise form: bits per stored value (0 = float32)."),
) -> None:
    """Print the basis memory per process that TWA over these checkpoints needs."""
    from hf_efftrain.trajectory import Trajectory
    from hf_efftrain.twa.memory import BasisPlan

    trajectory = Trajectory(folder)
    plan = BasisPlan(trajectory.num_parameters, len(trajectory), world=world_size, bits=bits)
    typer.echo(f"checkpoints: {len(trajectory)}  parameters per checkpoint: {trajectory.num_parameters:,}")
    typer.echo(f"basis per process: {plan.basis_mb:,.1f} MiB ({plan.rows} rows on the first of {world_size})")
    typer.echo(f"peak per process (with working vectors): {plan.peak_mb:,.1f} MiB")
