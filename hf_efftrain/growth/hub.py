"""Publishing a grown model: a model card that says how it was grown and trained, and the upload.

The card's metadata names the sources as ``base_model`` and carries the tags ``hf_efftrain`` and
``model-growth``; its body says what training followed the growth (from the Trainer's ``trainer_state.json``
when the folder has one) and what became of the sources' pooler, holds the recipe (YAML, sources as Hub ids or
relative paths) and, when a LAG selection chose this growth, the LAG table (``lag/`` in the folder). Two standard
ways up, one card: :func:`push_grown_model` (``huggingface_hub``'s ``create_repo`` + ``upload_folder``) and
``EfficientTrainer.push_to_hub`` (its ``create_model_card`` writes this card, :func:`write_trainer_card`).
:func:`write_model_card` alone shows offline what would be uploaded. Example::

    write_model_card("out/grown", lag_result=result)              # out/grown/README.md
    push_grown_model("out/grown", "me/minilm-12l-stacked")        # create_repo + upload_folder
"""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import HfApi, ModelCard, ModelCardData

from hf_efftrain.atomic import write_text
from hf_efftrain.errors import GrowthError
from hf_efftrain.growth.lag_report import LagResult
from hf_efftrain.growth.provenance import (
    ORIGIN_NOTES,
    TrainingRecord,
    base_models,
    pooler_note,
    portable_recipe,
    save_recipe,
)
from hf_efftrain.growth.recipe import RECIPE_FILE, GrowthRecipe
from hf_efftrain.outputs import MANIFEST_FILE

TAGS = ["hf_efftrain", "model-growth"]
LAG_DIR = "lag"  # where a grown folder keeps the LAG report that chose its growth
UPLOAD_IGNORE = [MANIFEST_FILE, "checkpoint-*", "_*"]  # local bookkeeping and Trainer checkpoints
PIPELINES = {"masked-lm": "fill-mask", "causal-lm": "text-generation"}
NOT_RECORDED = (
    "No training after growth is recorded with this model (no `trainer_state.json`): unless stated elsewhere, "
    "these are the weights as grown."
)


def _origin(bases: list[str]) -> str:
    if not bases:
        return "local checkpoints"
    notes = [f"`{b}` ({ORIGIN_NOTES[b]})" if b in ORIGIN_NOTES else f"`{b}`" for b in bases]
    return ", ".join(notes)


def model_card(
    folder: str | Path, lag_result: LagResult | None = None, training: TrainingRecord | object | None = None
) -> ModelCard:
    """The card of a grown model folder (which must hold the saved ``growth_recipe.yaml``).

    ``training`` (a :class:`~hf_efftrain.growth.provenance.TrainingRecord` or ``trainer.state``) says what
    training followed the growth; by default it is read from the folder's ``trainer_state.json``. The LAG table
    comes from ``lag_result`` or the folder's ``lag/`` report.
    """
    folder = Path(folder)
    if not (folder / RECIPE_FILE).is_file() or not (folder / "config.json").is_file():
        raise GrowthError(f"{folder} is not a grown model folder (needs config.json and {RECIPE_FILE})")
    recipe = GrowthRecipe.load(folder / RECIPE_FILE)
    config = json.loads((folder / "config.json").read_text())
    bases = base_models(recipe)
    if training is not None and not isinstance(training, TrainingRecord):
        training = TrainingRecord.from_state(training)
    record = training or TrainingRecord.load(folder)
    lag_result = lag_result or saved_lag(folder)
    data = ModelCardData(
        base_model=bases or None, tags=TAGS, library_name="transformers", pipeline_tag=PIPELINES.get(recipe.task or "")
    )
    body = [
        f"# {recipe.display_name}",
        "",
        f"A `{config.get('model_type')}` model grown with [hf_efftrain](https://github.com/hf-efftrain/hf-efftrain) "
        f"from {_origin(bases)}.",
        *(["", note] if (note := pooler_note(recipe, folder)) else []),
        "",
        "## Training after growth",
        "",
        record.to_markdown() if record is not None else NOT_RECORDED,
        "",
        "## Growth recipe",
        "",
        "```yaml",
        portable_recipe(recipe, folder).to_yaml().strip(),
        "```",
    ]
    if lag_result is not None:
        body += ["", "## LAG selection", "", lag_result.to_markdown().strip()]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body) + "\n")


def saved_lag(folder: str | Path) -> LagResult | None:
    """The LAG report saved in the grown folder (``lag/lag_report.json``), if any."""
    return LagResult.load(Path(folder) / LAG_DIR) if (Path(folder) / LAG_DIR / "lag_report.json").is_file() else None


def write_model_card(folder: str | Path, lag_result: LagResult | None = None, training=None) -> Path:
    """Write ``README.md`` (the card, see :func:`model_card`) into the grown model folder, atomically."""
    path = Path(folder) / "README.md"
    write_text(path, str(model_card(folder, lag_result, training)))
    return path


def push_grown_model(
    folder: str | Path,
    repo_id: str,
    lag_result: LagResult | None = None,
    private: bool = False,
    token: str | None = None,
    api: HfApi | None = None,
) -> str:
    """Write the card, create the repo if needed and upload the folder (weights, tokenizer, recipe, LAG report,
    trainer state, card) with ``huggingface_hub``'s ``create_repo`` and ``upload_folder``."""
    if lag_result is not None:
        lag_result.save(Path(folder) / LAG_DIR)  # the report travels with the table in the card
    write_model_card(folder)
    api = api or HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    commit = api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        repo_type="model",
        commit_message="Upload grown model (hf_efftrain)",
        ignore_patterns=UPLOAD_IGNORE,
    )
    return str(getattr(commit, "commit_url", None) or f"https://huggingface.co/{repo_id}")


def write_trainer_card(trainer) -> bool:
    """The growth card for ``Trainer.push_to_hub``/``create_model_card``; ``False`` when the model is not grown.

    A model is grown when ``output_dir`` holds a recipe, or the folder it was loaded from does (the recipe, made
    portable for ``output_dir``, and the LAG report are then copied over so that they are uploaded with it).
    """
    if not trainer.is_world_process_zero():
        return True  # as Trainer: only the main process writes the card
    out = Path(trainer.args.output_dir)
    loaded_from = getattr(trainer.accelerator.unwrap_model(trainer.model), "name_or_path", "")
    origin = Path(loaded_from) if loaded_from else None  # a model built in memory comes from no folder
    if not (out / RECIPE_FILE).is_file():
        if origin is None or not (origin / RECIPE_FILE).is_file():
            return False
        save_recipe(GrowthRecipe.load(origin / RECIPE_FILE), out)
        if (lag := saved_lag(origin)) is not None:
            lag.save(out / LAG_DIR)
    write_model_card(out, training=trainer.state)
    return True
