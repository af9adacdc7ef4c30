"""``hf-efftrain mat ...``: look at a finished MAT run from the files it left in its output folder.

Example::

    hf-efftrain mat summary outputs/finetune
    hf-efftrain mat heatmap outputs/finetune --out heat.png
"""

from __future__ import annotations

from pathlib import Path

import typer

from hf_efftrain.mat.history_file import read_history

app = typer.Typer(help="Inspect MAT runs (mat_history.json written at the end of training).")


@app.command("summary")
def summary(run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="output_dir of a finished MAT run.")) -> None:
    """Per layer: share of measurements in which each module was active; measurement count and time."""
    data = read_history(run_dir)
    history, units = data["history"], data["units"]
    typer.echo(f"measurements: {data['measurements']}  measuring time: {data['measure_seconds']:.1f} s")
    saved = 1.0 - data["flops_done"] / data["flops_full"] if data["flops_full"] else 0.0
    typer.echo(f"backward FLOPs of hooked projections saved: {saved:.1%}")
    for index, name in enumerate(units):
        share = sum(h["active"][index] for h in history) / len(history)
        typer.echo(f"{name:>10}  active {share:6.1%}  last λmax {history[-1]['lambda'][index]:.3e}")


@app.command("heatmap")
def heatmap(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="output_dir of a finished MAT run."),
    out: Path | None = typer.Option(None, help="PNG to write (default: RUN_DIR/mat_heatmap.png)."),
) -> None:
    """Redraw the λmax / gates heat map (layers × heads over steps)."""
    from hf_efftrain.mat.plot import plot_heatmap

    data = read_history(run_dir)
    target = out or run_dir / "mat_heatmap.png"
    plot_heatmap(data["history"], data["units"], target)
    typer.echo(str(target))
