"""Run by test_cmd_ddp under torchrun: online (and, with ``embed``, embedded) CMD with 2 gloo processes.

Each process writes what it holds: rank 0 the CMD state, every rank the embedded tensors, the tensors that
received a gradient at the last optimizer step, and its final weights.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cmd_tiny import tiny_trainer  # noqa: E402

from hf_efftrain.cmd import CMDCallback  # noqa: E402


class GradientSpy(TrainerCallback):
    """Names of the parameters holding a gradient just before each optimizer step (after DDP's all-reduce)."""

    def __init__(self) -> None:
        self.with_grad: list[list[str]] = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.with_grad.append(sorted(n for n, p in model.named_parameters() if p.grad is not None))


out, embed = Path(sys.argv[1]), "embed" in sys.argv[2:]
knobs = {"cmd_online": True, "cmd_every": 1, "cmd_warmup": 3, "cmd_modes": 2, "cmd_candidates": 100}
if embed:
    knobs.update(cmd_embed_every=2, cmd_embed_fraction=0.3, max_steps=12)
spy = GradientSpy()
trainer = tiny_trainer(out, callbacks=[spy], **{"max_steps": 8, "logging_steps": 8, **knobs})
trainer.train()
callback = next(c for c in trainer.callback_handler.callbacks if isinstance(c, CMDCallback))
rank = trainer.args.process_index
record = {
    "ready": callback.ready,
    "snapshots": callback.snapshots,
    "embedded": sorted(callback.embedding.a),
    "frozen": sorted(n for n, p in trainer.model.named_parameters() if not p.requires_grad),
    "embedding_steps": [entry["step"] for entry in callback.history],
    "with_grad_last_step": spy.with_grad[-1],
    "find_unused_parameters": trainer.args.ddp_find_unused_parameters,
}
(out / f"rank{rank}.json").write_text(json.dumps(record))
torch.save({n: p.detach().clone() for n, p in trainer.model.named_parameters()}, out / f"rank{rank}.pt")
