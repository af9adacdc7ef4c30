"""Run by ``torchrun --nproc_per_node 2`` from test_mat_ddp.py: train a tiny BERT with MAT, dump each rank's gates."""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from _mat_train_utils import tiny_args, tiny_bert, tiny_classification_data  # noqa: E402

from hf_efftrain import EfficientTrainer  # noqa: E402
from hf_efftrain.entrypoint import close_process_group  # noqa: E402
from hf_efftrain.mat import MATCallback  # noqa: E402


def main(out_dir: str) -> None:
    args = tiny_args(out_dir, max_steps=8, ddp_backend="gloo", per_device_train_batch_size=4)
    trainer = EfficientTrainer(model=tiny_bert(), args=args, train_dataset=tiny_classification_data())
    trainer.train()
    engine = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, MATCallback)).engine
    rank = int(os.environ["RANK"])
    q_weight = trainer.model.bert.encoder.layer[0].attention.self.query.weight
    record = {"history": engine.history, "world": args.world_size, "q_sum": float(q_weight.double().sum())}
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w", encoding="utf-8") as handle:
        json.dump(record, handle)


if __name__ == "__main__":
    main(sys.argv[1])
    close_process_group()
