"""Train a tiny BERT classifier with EfficientTrainer; used by tests under torchrun and for resume checks.

torchrun --nproc_per_node 2 tests/scripts/train_tiny.py OUT_DIR [--max_steps N] [--resume] [--plain]

``--plain`` trains with ``transformers.Trainer`` instead (no snapshots), for the bit-for-bit comparison.
"""

from __future__ import annotations

import argparse
import json
import os

import torch
from datasets import Dataset
from transformers import Trainer, TrainerCallback, TrainingArguments

from hf_efftrain import EfficientTrainer, EfficientTrainingArguments
from hf_efftrain.entrypoint import close_process_group
from hf_efftrain.testing import tiny_model


class LossLog(TrainerCallback):
    def __init__(self) -> None:
        self.losses: dict[int, float] = {}

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses[state.global_step] = logs["loss"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--max_steps", type=int, default=6)
    parser.add_argument("--stop_after", type=int, default=None, help="simulate a kill after this many steps")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--accumulation", type=int, default=1, help="gradient_accumulation_steps")
    parser.add_argument("--plain", action="store_true", help="transformers.Trainer instead of EfficientTrainer")
    opts = parser.parse_args()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 96, (64, 8), generator=gen)
    data = Dataset.from_dict({"input_ids": ids.tolist(), "labels": (ids[:, 0] % 2).tolist()})
    settings = dict(
        output_dir=opts.out,
        max_steps=opts.max_steps,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=opts.accumulation,
        learning_rate=1e-3,
        logging_steps=1,
        save_steps=3,
        seed=5,
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
        ddp_backend="gloo" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
    )
    args = TrainingArguments(**settings) if opts.plain else EfficientTrainingArguments(**settings, snapshot_every=2)
    log = LossLog()
    callbacks = [log]
    if opts.stop_after is not None:

        class Stop(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step >= opts.stop_after:
                    control.should_training_stop = True

        callbacks.append(Stop())
    trainer_cls = Trainer if opts.plain else EfficientTrainer
    trainer = trainer_cls(
        model=tiny_model("bert", task="classification"), args=args, train_dataset=data, callbacks=callbacks
    )
    trainer.train(resume_from_checkpoint=True if opts.resume else None)
    if trainer.is_world_process_zero():
        with open(os.path.join(opts.out, "losses.json"), "w") as handle:
            json.dump({"world_size": trainer.args.world_size, "losses": log.losses}, handle)
        torch.save(trainer.model.state_dict(), os.path.join(opts.out, "weights.pt"))
    del trainer  # frees the DDP reducer, which holds the gloo group, before the group is destroyed
    close_process_group()


if __name__ == "__main__":
    main()
