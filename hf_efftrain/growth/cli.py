"""``hf-efftrain grow`` and ``hf-efftrain lag``: growth recipes from the command line.

Examples::

    hf-efftrain grow recipes/stack.yaml out/grown [--push-to-hub user/grown-minilm]
    hf-efftrain lag recipes/*.yaml --lag-steps 20 --output lag_report/
"""

from __future__ import annotations

from pathlib import Path

import typer

# Added to the root app without a name, so its commands are top-level: `hf-efftrain grow`, `hf-efftrain lag`.
growth_app = typer.Typer(help="Model growth from recipes, ranked by LAG.")


@growth_app.command("grow")
def grow(
    recipe: Path = typer.Argument(..., metavar="RECIPE", help="Growth recipe (.yaml/.yml/.json)."),
    output_dir: Path = typer.Argument(
        ..., metavar="OUTPUT_DIR", help="Folder for the grown model, tokenizer and recipe."
    ),
    push_to_hub: str | None = typer.Option(None, "--push-to-hub", help="Also upload to this Hub repo id."),
    lag_report: Path | None = typer.Option(None, "--lag-report", help="A `hf-efftrain lag` output for the card."),
    private: bool = typer.Option(False, "--private", help="Create the Hub repo as private."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an earlier `grow` output in OUTPUT_DIR (never other files)."
    ),
) -> None:
    """Validate RECIPE, grow the model and save it (with the recipe and a model card) in OUTPUT_DIR."""
    from hf_efftrain.growth.grow import grow_from_recipe
    from hf_efftrain.growth.hub import push_grown_model
    from hf_efftrain.growth.lag_report import LagResult

    lag = LagResult.load(lag_report) if lag_report else None  # a bad report fails before the growth is written
    folder = grow_from_recipe(recipe, output_dir, overwrite=overwrite, card=True, lag_result=lag)
    typer.echo(f"grown model saved to {folder}")
    if push_to_hub:
        url = push_grown_model(folder, push_to_hub, lag_result=lag, private=private)
        typer.echo(f"pushed to {url}")


@growth_app.command("lag")
def lag(
    recipes: list[Path] = typer.Argument(..., metavar="RECIPES", help="Two or more growth recipes (the candidates)."),
    lag_steps: int = typer.Option(20, "--lag-steps", help="Training steps after growth before ranking."),
    output: Path = typer.Option(Path("lag_report"), "--output", help="Folder for lag_report.{json,md} and the plot."),
    dataset: str = typer.Option("wikipedia", "--dataset", help="Offline 'wikipedia' or a datasets name."),
    block_size: int = typer.Option(64, "--block-size", help="Tokens per training block."),
    batch_size: int = typer.Option(8, "--batch-size", help="Blocks per step."),
    learning_rate: float = typer.Option(1e-4, "--learning-rate", help="AdamW learning rate (same for all)."),
    eval_blocks: int = typer.Option(32, "--eval-blocks", help="Held-out blocks scored at step 0 and each lag."),
    seed: int = typer.Option(0, "--seed", help="Seed of data order, masks and fresh weights."),
    device: str | None = typer.Option(
        None, "--device", help="Train the candidates on this device ('cpu', 'cuda'); default: the Trainer's choice."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier `lag` report in --output."),
) -> None:
    """Train every recipe's grown model LAG_STEPS steps under identical conditions; print the ranking."""
    from hf_efftrain.growth.lag_data import lag_candidates_from_recipes
    from hf_efftrain.outputs import check_output, output_directory

    check_output(output, "lag", inputs=recipes, overwrite=overwrite)
    result = lag_candidates_from_recipes(
        recipes, lag_steps, dataset, block_size, batch_size, learning_rate, eval_blocks, seed, device
    )
    with output_directory(output, "lag") as tmp:
        result.save(tmp)
    typer.echo(result.to_markdown())
    typer.echo(f"report saved to {output}")
