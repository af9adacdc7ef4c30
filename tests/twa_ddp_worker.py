"""Worker of the multi-process TWA test: run it with ``python`` (one process) or ``torchrun`` (gloo).

It writes ``result-rank{r}.pt`` into the folder given as argument:
* ``functional``: post-hoc TWA (both forms) on fixed checkpoints and batches, with the final θ and the
  basis memory of this process;
* ``trainer``: an EfficientTrainer run with ``twa=True`` (per-device batch = 8 / world size), its losses,
  final θ and TWA report.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _twa_support import losses, toy_trainer  # noqa: E402

from hf_efftrain.entrypoint import close_process_group  # noqa: E402
from hf_efftrain.testing import tiny_inputs, tiny_model  # noqa: E402
from hf_efftrain.twa import TrainableView, TWACallback, TWAConfig, train_twa  # noqa: E402


def functional() -> dict:
    out = {}
    for form, bits, lr in (("subspace", 0, 0.2), ("layerwise", 4, 0.05)):
        model = tiny_model("bert", task="classification", seed=0).train()
        view = TrainableView(model)
        gen = torch.Generator().manual_seed(0)
        checkpoints = [view.vector() + 0.05 * torch.randn(view.dim, generator=gen) for _ in range(6)]
        batch = {**tiny_inputs(model, batch=8, seq=7), "labels": torch.tensor([0, 1] * 4)}
        config = TWAConfig(form=form, steps=5, lr=lr, bits=bits)
        solver = train_twa(model, checkpoints, [batch], config)
        out[form] = {"theta": view.vector(), "basis_mb": solver.memory_mb}
    return out


def trainer_run(world: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        model = tiny_model("bert", task="classification", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        trainer = toy_trainer(
            folder,
            model=model.train(),
            per_device_train_batch_size=8 // world,
            twa=True,
            twa_start=0.5,
            twa_every=2,
            twa_steps=4,
            twa_lr=0.1,
            train_sampling_strategy="sequential",  # the same 8 examples per step in both layouts
            fix_loss_scaling=True,  # a mean over the 8 examples in both layouts (transformers scales by world size)
        )
        trainer.train()
    report = next(c for c in trainer.callback_handler.callbacks if isinstance(c, TWACallback)).report
    return {"losses": losses(trainer), "theta": TrainableView(trainer.model).vector(), "report": report}


def main(out_dir: str) -> None:
    distributed = "LOCAL_RANK" in os.environ
    if distributed:
        dist.init_process_group("gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    result = {"world": world, "functional": functional(), "trainer": trainer_run(world)}
    torch.save(result, Path(out_dir) / f"result-rank{rank}.pt")
    close_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
