"""``hf-efftrain cmd``: fit CMD to a trajectory folder, summarize it, and export reconstructed models.

Example::

    hf-efftrain cmd fit runs/demo/snapshots runs/cmd --modes 5
    hf-efftrain cmd reconstruct runs/cmd --step 120 --save runs/cmd/step-120
"""

from __future__ import annotations

from pathlib import Path

import typer

cmd_app = typer.Typer(help="Correlation mode decomposition (CMD) of a checkpoint sequence.", no_args_is_help=True)


def _table(rows: list[dict]) -> str:
    columns = list(rows[0]) if rows else []
    cell = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    widths = [max(len(c), *(len(cell(r[c])) for r in rows)) for c in columns]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(cell(r[c]).ljust(w) for c, w in zip(columns, widths, strict=True)) for r in rows]
    return "\n".join(lines)


@cmd_app.command("fit")
def fit(
    trajectory: Path = typer.Argument(
        ..., metavar="TRAJECTORY", help="Folder of checkpoint-N/ or snapshot-N/ folders."
    ),
    out: Path = typer.Argument(..., metavar="OUT", help="Folder for cmd.safetensors, cmd.json, summary.md and plots."),
    modes: int = typer.Option(5, "--modes", "-m", help="Number of modes M (1..255)."),
    candidates: int = typer.Option(1000, help="Reference candidates K clustered (memory grows as K²)."),
    seed: int = typer.Option(0, help="Seed of the candidate sampling."),
    chunk_elements: int = typer.Option(2**22, help="Numbers read per block (T included); bounds memory."),
    base_model: str | None = typer.Option(
        None, help="from_pretrained or PEFT adapter folder to rebuild models from (default: found)."
    ),
    plots: bool = typer.Option(True, help="Write the four PNG figures into OUT/plots."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier `cmd fit` output in OUT."),
) -> None:
    """Fit post-hoc CMD, save the result, print the per-mode summary. OUT is written whole or not at all."""
    from hf_efftrain.cmd.export import check_base_folder, find_base_model
    from hf_efftrain.cmd.plots import plot_all
    from hf_efftrain.cmd.posthoc import fit_cmd
    from hf_efftrain.outputs import check_output, output_directory
    from hf_efftrain.trajectory import Trajectory

    check_output(out, "cmd fit", inputs=[trajectory, base_model], overwrite=overwrite)
    if base_model is not None:
        check_base_folder(base_model, what="--base-model")  # before the fit, not at reconstruct time
    traj = Trajectory(trajectory)
    base = base_model or find_base_model(trajectory, [c.folder for c in traj.checkpoints])
    result = fit_cmd(traj, modes=modes, candidates=candidates, seed=seed, max_elements=chunk_elements, base_model=base)
    with output_directory(out, "cmd fit") as tmp:
        result.save(tmp)
        (tmp / "summary.md").write_text(result.summary_markdown(), encoding="utf-8")
        if plots:
            plot_all(result, tmp / "plots")
    table = _table(result.summary_rows())
    typer.echo(table)
    typer.echo(
        f"relative reconstruction error {result.stats['relative_reconstruction_error']:.3g} "
        f"(of the displacement from step {result.steps[0]}: {result.stats['relative_displacement_error']:.3g}); "
        f"saved to {out}"
    )


@cmd_app.command("summary")
def summary(out: Path = typer.Argument(..., metavar="OUT", help="Folder written by `cmd fit`.")) -> None:
    """Print the per-mode table of a saved CMD result."""
    from hf_efftrain.cmd.result import CMDResult

    result = CMDResult.load(out)
    typer.echo(_table(result.summary_rows()))


@cmd_app.command("reconstruct")
def reconstruct(
    out: Path = typer.Argument(..., metavar="OUT", help="Folder written by `cmd fit`."),
    step: float = typer.Option(..., help="Training step t (any value within the fitted range)."),
    save: Path = typer.Option(
        ..., help="Folder for the reconstructed model (from_pretrained-able; an adapter folder for a PEFT run)."
    ),
    base_model: str | None = typer.Option(None, help="Override the base model folder recorded by `cmd fit`."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier `cmd reconstruct` output in SAVE."),
) -> None:
    """Rebuild θ̂(t) = a·r(t) + b and save it as a loadable model folder (written whole or not at all)."""
    from hf_efftrain.cmd.export import export_reconstruction
    from hf_efftrain.cmd.result import CMDResult
    from hf_efftrain.errors import CMDFitError
    from hf_efftrain.outputs import check_inputs, check_output

    check_output(save, "cmd reconstruct", inputs=[out, base_model], overwrite=overwrite)
    result = CMDResult.load(out)
    base = base_model or result.meta.get("base_model")
    if not base:
        raise CMDFitError(f"{out} records no base model; pass --base-model with the folder the run started from")
    if base != base_model:
        check_inputs(save.resolve(), [base])  # the base the fit recorded is an input too
    export_reconstruction(result.reconstruct(step), base, save)
    typer.echo(f"saved the CMD reconstruction at step {step:g} to {save}")
