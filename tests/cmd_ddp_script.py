"""Run by test_cmd_ddp under torchrun: online CMD with 2 gloo processes; rank 0 holds the CMD state."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cmd_tiny import tiny_trainer  # noqa: E402

from hf_efftrain.cmd import CMDCallback  # noqa: E402

out = Path(sys.argv[1])
trainer = tiny_trainer(
    out, max_steps=8, cmd_online=True, cmd_every=1, cmd_warmup=3, cmd_modes=2, cmd_candidates=100, logging_steps=8
)
trainer.train()
callback = next(c for c in trainer.callback_handler.callbacks if isinstance(c, CMDCallback))
rank = trainer.args.process_index
(out / f"rank{rank}.json").write_text(json.dumps({"ready": callback.ready, "snapshots": callback.snapshots}))
