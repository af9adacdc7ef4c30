"""Grow MiniLM-L6 to 12 layers, let LAG choose the stacking strategy, then pre-train the pick with masked LM.

Offline by default (real MiniLM-L6 and the real Wikipedia sample). Every candidate strategy is trained
``--lag_steps`` steps under identical conditions; the best one is grown again, pre-trained for
``--max_steps`` steps, and saved with its recipe, the LAG report and a model card::

    python examples/grow_and_pretrain.py --max_steps 200 --lag_steps 20
    torchrun --standalone --nproc_per_node 2 examples/grow_and_pretrain.py \
        --strategies copy_all interleave --push_to_hub true --hub_model_id me/minilm-12l

``--push_to_hub``/``--hub_model_id`` are the Trainer's own flags; here they upload the grown model once, at the
end, with its recipe, LAG report and card (not the Trainer's checkpoints).

The grown model fine-tunes like any checkpoint, MAT included::

    python examples/finetune.py --model_name_or_path outputs/grow_and_pretrain --mat true --output_dir outputs/grown
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from datasets import DatasetDict
from transformers import AutoTokenizer, set_seed

from hf_efftrain import EfficientTrainer, EfficientTrainingArguments
from hf_efftrain.data import load_wikipedia, minilm_path
from hf_efftrain.entrypoint import parse_arguments, run_main
from hf_efftrain.growth.grow import apply_recipe, save_tokenizer
from hf_efftrain.growth.hub import LAG_DIR, push_grown_model, write_model_card
from hf_efftrain.growth.lag import select_growth
from hf_efftrain.growth.mlm import MlmCollator, fixed_mlm_eval
from hf_efftrain.growth.provenance import portable_recipe, save_recipe
from hf_efftrain.growth.recipe import GrowthRecipe
from hf_efftrain.log import preparation_output
from hf_efftrain.run_folder import RunFolderArguments, claim_run_folder
from hf_efftrain.tasks import tokenize_lm_blocks

DEFAULTS = {
    "output_dir": "outputs/grow_and_pretrain",
    "max_steps": 200,
    "per_device_train_batch_size": 8,
    "per_device_eval_batch_size": 32,
    "learning_rate": 2e-4,
    "warmup_steps": 10,
    "logging_steps": 20,
    "save_strategy": "no",
    "report_to": "none",
    "seed": 0,
    # per-device loss means: with token averaging across devices transformers 5 reports the evaluation loss
    # multiplied by the number of processes
    "average_tokens_across_devices": False,
    "fix_loss_scaling": True,  # BERT's masked-LM loss is a plain mean: no scaling by processes or accumulation
}
STRATEGY_PARAMS = {"top_k": {"k": 2}, "middle": {"block": 2}}


@dataclass
class GrowArguments(RunFolderArguments):
    source: str = field(default="minilm", metadata={"help": "'minilm' (offline MiniLM-L6) or a local model folder."})
    target_layers: int = field(default=12, metadata={"help": "Depth of the grown model."})
    strategies: list[str] = field(
        default_factory=lambda: ["copy_all", "interleave", "top_k", "middle"],
        metadata={"help": "Depth strategies to compare with LAG (copy_all, interleave, top_k, middle)."},
    )
    lag_steps: int = field(default=20, metadata={"help": "LAG: training steps per candidate before ranking."})
    block_size: int = field(default=64, metadata={"help": "Tokens per masked-LM block."})
    eval_blocks: int = field(default=64, metadata={"help": "Held-out blocks (whole held-out articles)."})
    max_train_articles: int | None = field(default=None, metadata={"help": "Use only this many training articles."})


def hub_repo(args: EfficientTrainingArguments) -> str | None:
    """The repo of ``--push_to_hub`` (``--hub_model_id``, else the output folder's name, as the Trainer does),
    taken over from the Trainer, which would create it at once and push checkpoints."""
    if not args.push_to_hub:
        return None
    args.push_to_hub = False  # LAG's and the final Trainer would otherwise create the repo and push checkpoints
    return args.hub_model_id or Path(args.output_dir).absolute().name


def recipes_for(grow: GrowArguments, source: str) -> dict[str, GrowthRecipe]:
    """One recipe per strategy (the whole growth, saved with the result)."""
    recipes = {}
    for strategy in grow.strategies:
        step = {"strategy": strategy, "target_layers": grow.target_layers, **STRATEGY_PARAMS.get(strategy, {})}
        recipes[strategy] = GrowthRecipe([source], [{"depth": step}], task="masked-lm", name=f"{strategy}-stack")
    return recipes


def wikipedia_blocks(tokenizer, grow: GrowArguments, seed: int) -> DatasetDict:
    splits = load_wikipedia(seed=seed)
    if grow.max_train_articles:
        splits["train"] = splits["train"].select(range(min(grow.max_train_articles, len(splits["train"]))))
    return tokenize_lm_blocks(splits, tokenizer, block_size=grow.block_size)


def main(argv: list[str] | None = None) -> dict:
    grow, args = parse_arguments((GrowArguments, EfficientTrainingArguments), DEFAULTS, argv)
    resume = claim_run_folder(args, "grow_and_pretrain.py", grow.overwrite_output_dir)
    push_to = hub_repo(args)
    source = str(minilm_path()) if grow.source == "minilm" else grow.source
    with preparation_output(args):  # --log_level and --disable_tqdm apply already; one process draws the bars
        tokenizer = AutoTokenizer.from_pretrained(source)
        blocks = wikipedia_blocks(tokenizer, grow, args.seed)
        held = blocks["validation"].select(range(min(grow.eval_blocks, len(blocks["validation"]))))
        eval_set = fixed_mlm_eval(held, tokenizer, seed=args.seed)
    collator = MlmCollator(tokenizer, seed=args.seed)
    recipes = recipes_for(grow, source)
    lag = select_growth(
        {name: (lambda r=r: apply_recipe(r)) for name, r in recipes.items()},
        blocks["train"], grow.lag_steps, args=args, eval_dataset=eval_set, data_collator=collator,
        schedule_steps=args.max_steps,
        recipes={n: portable_recipe(r, args.output_dir).to_dict() for n, r in recipes.items()},
    )  # fmt: skip
    set_seed(args.seed)
    model = apply_recipe(recipes[lag.pick])
    trainer = EfficientTrainer(
        model=model, args=args, train_dataset=blocks["train"], eval_dataset=eval_set, data_collator=collator
    )
    trainer.train(resume_from_checkpoint=resume)
    metrics = {"lag_pick": lag.pick, **trainer.evaluate()}
    if trainer.is_world_process_zero():
        out = Path(args.output_dir)
        trainer.save_model(str(out))
        trainer.save_state()  # trainer_state.json: the card states the steps and losses of this training
        save_tokenizer(source, out)
        save_recipe(recipes[lag.pick], out)
        lag.save(out / LAG_DIR)
        write_model_card(out)  # recipe, LAG table (from out/lag) and this training (from trainer_state.json)
        if push_to:
            push_grown_model(out, push_to)
        print(json.dumps(metrics, indent=2, default=str))
    return metrics


if __name__ == "__main__":
    run_main(main, prog="grow_and_pretrain.py")
