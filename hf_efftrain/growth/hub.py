"""Publishing a grown model: a model card that says how it was grown, and the upload.

The card's metadata names the sources as ``base_model`` and carries the tags ``hf_efftrain`` and
``model-growth``; its body holds the recipe (YAML) and, when a LAG selection chose this growth, the LAG
table. :func:`write_model_card` is separate from :func:`push_grown_model` so that what *would* be uploaded
can be checked offline. Hub ids of the sources: the recipe's ``base_models`` if given, else each source
config's ``_name_or_path`` when it looks like ``org/name`` and is not a local folder. Example::

    write_model_card("out/grown", lag_result=result)              # out/grown/README.md
    push_grown_model("out/grown", "me/minilm-12l-stacked")        # create_repo + upload_folder
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from huggingface_hub import HfApi, ModelCard, ModelCardData

from hf_efftrain.atomic import write_text
from hf_efftrain.errors import GrowthError
from hf_efftrain.growth.lag_report import LagResult
from hf_efftrain.growth.recipe import RECIPE_FILE, GrowthRecipe
from hf_efftrain.outputs import MANIFEST_FILE

TAGS = ["hf_efftrain", "model-growth"]
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def base_models(recipe: GrowthRecipe) -> list[str]:
    """Hub ids of the recipe's sources, where they can be known."""
    if recipe.notes.get("base_models"):
        return list(recipe.notes["base_models"])
    ids = []
    for source in recipe.sources:
        config = Path(source) / "config.json"
        name = json.loads(config.read_text()).get("_name_or_path", "") if config.is_file() else ""
        if _REPO_ID.match(name or "") and not Path(name).exists():
            ids.append(name)
    return ids


def model_card(folder: str | Path, lag_result: LagResult | None = None) -> ModelCard:
    """The card of a grown model folder (which must hold the saved ``growth_recipe.yaml``)."""
    folder = Path(folder)
    if not (folder / RECIPE_FILE).is_file() or not (folder / "config.json").is_file():
        raise GrowthError(f"{folder} is not a grown model folder (needs config.json and {RECIPE_FILE})")
    recipe = GrowthRecipe.load(folder / RECIPE_FILE)
    config = json.loads((folder / "config.json").read_text())
    bases = base_models(recipe)
    data = ModelCardData(
        base_model=bases or None,
        tags=TAGS,
        library_name="transformers",
        pipeline_tag={"masked-lm": "fill-mask", "causal-lm": "text-generation"}.get(recipe.task or ""),
    )
    body = [
        f"# {recipe.display_name}",
        "",
        f"A `{config.get('model_type')}` model grown with [hf_efftrain](https://github.com/hf-efftrain/hf-efftrain) "
        f"from {', '.join(f'`{b}`' for b in bases) or 'local checkpoints'}. It has not been trained after growth "
        "unless stated below.",
        "",
        "## Growth recipe",
        "",
        "```yaml",
        (folder / RECIPE_FILE).read_text().strip(),
        "```",
    ]
    if lag_result is not None:
        body += ["", "## LAG selection", "", lag_result.to_markdown().strip()]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body) + "\n")


def write_model_card(folder: str | Path, lag_result: LagResult | None = None) -> Path:
    """Write ``README.md`` (the card) into the grown model folder, atomically."""
    path = Path(folder) / "README.md"
    write_text(path, str(model_card(folder, lag_result)))
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
