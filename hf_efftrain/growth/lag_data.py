"""LAG over recipe files: the data, collator and arguments that ``hf-efftrain lag`` uses.

Masked-LM candidates are scored on a held-out set with one fixed mask; causal-LM candidates on held-out
blocks (labels = inputs). Every candidate is built from its recipe only when its turn comes. Example::

    result = lag_candidates_from_recipes(["a.yaml", "b.yaml"], lag_steps=20)
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from pathlib import Path

from transformers import DataCollatorForLanguageModeling

from hf_efftrain.errors import GrowthError
from hf_efftrain.growth.grow import apply_recipe, infer_task
from hf_efftrain.growth.lag import select_growth
from hf_efftrain.growth.lag_report import LagResult
from hf_efftrain.growth.mlm import MlmCollator, fixed_mlm_eval
from hf_efftrain.growth.recipe import GrowthRecipe, validate_recipe
from hf_efftrain.model_folder import check_weights, load_tokenizer


def lm_data(tokenizer, task: str, dataset: str, block_size: int, eval_blocks: int, seed: int):
    """``(train blocks, held-out blocks, collator)`` for a masked- or causal-LM task."""
    from hf_efftrain.tasks import load_splits, tokenize_lm_blocks

    splits = load_splits(dataset, seed=seed, need=("train", "text"))
    held_out = "validation" if "validation" in splits else "test"
    if held_out not in splits:
        raise GrowthError(f"dataset {dataset} has no validation or test split to score the candidates on")
    blocks = tokenize_lm_blocks(splits, tokenizer, block_size=block_size)
    if not len(blocks["train"]) or not len(blocks[held_out]):
        raise GrowthError(f"dataset {dataset} holds less than one {block_size}-token block in train or {held_out}")
    held = blocks[held_out].select(range(min(eval_blocks, len(blocks[held_out]))))
    if task == "masked-lm":
        return blocks["train"], fixed_mlm_eval(held, tokenizer, seed=seed), MlmCollator(tokenizer, seed=seed)
    if task != "causal-lm":
        raise GrowthError(f"hf-efftrain lag trains language models; recipe task {task!r} is not masked-lm/causal-lm")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return (
        blocks["train"],
        held.map(lambda b: {"labels": b["input_ids"]}),
        DataCollatorForLanguageModeling(tokenizer, mlm=False),
    )


def check_lag_settings(
    paths: Sequence[str | Path],
    lag_steps: int,
    block_size: int,
    batch_size: int,
    learning_rate: float,
    eval_blocks: int,
) -> None:
    """Every setting that cannot work, in one error, before a recipe or the data is read."""
    problems = [] if len(paths) >= 2 else [f"LAG ranks candidates: give two or more recipes, got {len(paths)}"]
    counts = {
        "--lag-steps": lag_steps,
        "--block-size": block_size,
        "--batch-size": batch_size,
        "--eval-blocks": eval_blocks,
    }
    problems += [f"{flag} must be at least 1, got {value}" for flag, value in counts.items() if value < 1]
    if not (math.isfinite(learning_rate) and learning_rate > 0):
        problems.append(f"--learning-rate must be a positive finite number, got {learning_rate}")
    if problems:
        raise GrowthError("; ".join(problems))


def lag_candidates_from_recipes(
    paths: Sequence[str | Path],
    lag_steps: int,
    dataset: str = "wikipedia",
    block_size: int = 64,
    batch_size: int = 8,
    learning_rate: float = 1e-4,
    eval_blocks: int = 32,
    seed: int = 0,
    device: str | None = None,
) -> LagResult:
    """Validate every recipe up front, then run :func:`select_growth` over them (on ``device``, default: the
    Trainer's choice)."""
    from hf_efftrain.trainer import EfficientTrainingArguments

    check_lag_settings(paths, lag_steps, block_size, batch_size, learning_rate, eval_blocks)
    recipes = [GrowthRecipe.load(p) for p in paths]
    for recipe in recipes:
        validate_recipe(recipe)
    for source in {s for recipe in recipes for s in recipe.sources}:
        check_weights(source)  # a damaged source fails now, not after the candidates before it have trained
    names = [r.name or Path(p).stem for r, p in zip(recipes, paths, strict=True)]
    if len(set(names)) != len(names):
        raise GrowthError(f"candidate names must differ, got {names}; set 'name:' in the recipes")
    tasks = {r.task or infer_task(r.sources[0]) for r in recipes}
    if len(tasks) != 1:
        raise GrowthError(f"all candidates must train on one task, got {sorted(tasks)}")
    tokenizer = load_tokenizer(recipes[0].sources[0], what="source", needed_for="lag (to tokenize --dataset)")
    train, held, collator = lm_data(tokenizer, tasks.pop(), dataset, block_size, eval_blocks, seed)
    with tempfile.TemporaryDirectory() as tmp:
        args = EfficientTrainingArguments(
            output_dir=tmp, per_device_train_batch_size=batch_size, per_device_eval_batch_size=batch_size,
            learning_rate=learning_rate, seed=seed, disable_tqdm=True, dataloader_num_workers=0,
        )  # fmt: skip
        candidates = {n: (lambda r=r: apply_recipe(r)) for n, r in zip(names, recipes, strict=True)}
        return select_growth(
            candidates, train, lag_steps, args=args, eval_dataset=held, data_collator=collator,
            recipes={n: r.to_dict() for n, r in zip(names, recipes, strict=True)}, device=device,
        )  # fmt: skip
