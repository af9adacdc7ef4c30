"""``hf-efftrain transfer SOURCE_TRAJ TARGET_INIT OUT``: move a learning trajectory onto a new initialization.

One command (registered on the main app with ``app.command("transfer")(transfer)``); the work is done by
:func:`hf_efftrain.transfer.tool.run_transfer`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from hf_efftrain.transfer.config import METHODS, SPACINGS, TransferConfig


def transfer(
    source: Path = typer.Argument(
        ..., metavar="SOURCE", help="Source trajectory: folder of checkpoint-N/ or snapshot-N/."
    ),
    target: Path = typer.Argument(
        ..., metavar="TARGET", help="Target initialization: a save_pretrained folder (config, tokenizer)."
    ),
    out: Path = typer.Argument(
        ..., metavar="OUT", help="Output folder: checkpoint-s/ model folders and transfer_report.json."
    ),
    steps: int = typer.Option(20, "--steps", help="Number of transferred points T (interpolated spacings)."),
    method: str = typer.Option("fgmt", "--method", help=f"One of {', '.join(METHODS)}."),
    spacing: str = typer.Option("cosine", "--spacing", help=f"One of {', '.join(SPACINGS)}."),
    batches: int = typer.Option(2, "--batches", help="Mini-batches averaged per gradient."),
    batch_size: int = typer.Option(32, "--batch-size", help="Examples per mini-batch."),
    dataset: str = typer.Option("rotten_tomatoes", "--dataset", help="rotten_tomatoes, wikipedia or a Hub id."),
    max_length: int = typer.Option(64, "--max-length", help="Tokens per example (or LM block)."),
    eval_samples: int = typer.Option(500, "--eval-samples", help="Validation examples scored at each point."),
    save: str = typer.Option("end", "--save", help="'end' (last point only) or 'all' (every point)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the batch order."),
    stay: float | None = typer.Option(
        None,
        "--stay",
        help="Prior keeping units in place, in row standard deviations (0: the paper's plain matching). "
        "Default: 1 when the target shares the source's pretrained weights, else 0.",
        show_default=False,
    ),
    stay_at: str = typer.Option(
        "auto",
        "--stay-at",
        help="Where --stay's prior sits: 'identity', 'previous' (the last step's permutation) or 'auto' "
        "(identity when the target shares the source's pretrained weights).",
    ),
    warm_start: bool | None = typer.Option(
        None,
        "--warm-start/--cold-start",
        help="Start each step's matching from the previous permutation, or from the identity. Default: warm when "
        "the target shares the source's pretrained weights, else cold.",
        show_default=False,
    ),
    pin_shared: bool = typer.Option(
        False,
        "--pin-shared/--match-shared",
        help="Keep at the identity the permutation groups whose weights the source start and the target share.",
    ),
    quiet: bool = typer.Option(False, "--quiet", hidden=True, help="Old spelling of `hf-efftrain --no-progress`."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier `transfer` output in OUT."),
) -> None:
    """Transfer a learning trajectory onto a new initialization by gradient matching (GMT/FGMT).

    Writes OUT/checkpoint-s/ (loadable with from_pretrained) and OUT/transfer_report.json.
    """
    from hf_efftrain.errors import TransferError
    from hf_efftrain.transfer.prior import describe_prior
    from hf_efftrain.transfer.tool import REPORT_FILE, run_transfer

    if save not in ("end", "all"):
        raise TransferError(f"--save must be 'end' or 'all', got {save!r}")
    config = TransferConfig(
        method=method,
        steps=steps,
        spacing=spacing,
        batches_per_step=batches,
        batch_size=batch_size,
        seed=seed,
        stay=stay,
        stay_at=stay_at,
        warm_start=warm_start,
        pin_shared=pin_shared,
    )
    report = run_transfer(
        source, target, out, config, dataset, max_length, eval_samples, save, progress=not quiet, overwrite=overwrite
    )
    for point in report["points"]:
        accuracy = f"  accuracy {point['accuracy']:.4f}" if "accuracy" in point else ""
        typer.echo(f"step {point['step']:>3}  lambda {point['lambda']:.3f}  loss {point['loss']:.4f}{accuracy}")
    typer.echo(f"matching prior: {describe_prior(report['prior'])}")
    typer.echo(f"report: {out / REPORT_FILE}")
