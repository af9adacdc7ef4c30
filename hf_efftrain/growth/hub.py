"""Publishing a grown model: a model card that says how it was grown and trained, and the upload.

The card's metadata names the sources as ``base_model`` and carries the tags ``hf_efftrain`` and
``model-growth``; its body says what training followed the growth (from the Trainer's ``trainer_state.json``
when the folder has one), holds the recipe (YAML, sources as Hub ids or relative paths) and, when a LAG
selection chose this growth, the LAG table. :func:`write_model_card` is separate from :func:`push_grown_model` so
that what *would* be uploaded can be checked offline. Hub ids of the sources: see
:func:`~hf_efftrain.growth.provenance.base_models`. Example::

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
from hf_efftrain.growth.provenance import ORIGIN_NOTES, TrainingRecord, base_models, portable_recipe
from hf_efftrain.growth.recipe import RECIPE_FILE, GrowthRecipe
from hf_efftrain.outputs import MANIFEST_FILE

TAGS = ["hf_efftrain", "model-growth"]
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
    training followed the growth; by default it is read from the folder's ``trainer_state.json``.
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
    data = ModelCardData(
        base_model=bases or None, tags=TAGS, library_name="transformers", pipeline_tag=PIPELINES.get(recipe.task or "")
    )
    body = [
        f"# {recipe.display_name}",
        "",
        f"A `{config.get('model_type')}` model grown with [hf_efftrain](https://github.com/hf-efftrain/hf-efftrain) "
        f"from {_origin(bases)}.",
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
    """Write the card, create the repo if needed and upload the folder (weights, tokenizer, recipe, card)."""
    write_model_card(folder, lag_result)
    api = api or HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    commit = api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        repo_type="model",
        commit_message="Upload grown model (hf_efftrain)",
        ignore_patterns=[MANIFEST_FILE],  # hf_efftrain's local bookkeeping, not part of the model
    )
    return str(getattr(commit, "commit_url", None) or f"https://huggingface.co/{repo_id}")
