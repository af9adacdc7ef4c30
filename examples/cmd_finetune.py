"""Fine-tune with online CMD riding along, then compare the last weights with the CMD weights.

Defaults run offline: MiniLM-L6 on Rotten Tomatoes. Online CMD takes a snapshot every ``--cmd_every`` steps,
freezes its modes after ``--cmd_warmup`` snapshots and keeps θ̂ = a·r(t) + b up to date (saved to
``<output_dir>/cmd_model``). ``--cmd_embed_every N`` also embeds converged tensors (they stop training).
With ``--snapshot_every K`` the run's trajectory is decomposed post-hoc at the end (``<output_dir>/cmd_posthoc``)::

    python examples/cmd_finetune.py --max_steps 200 --cmd_every 4 --cmd_warmup 10 --snapshot_every 4
    python examples/cmd_finetune.py --cmd_embed_every 5          # embedded CMD
    accelerate launch examples/cmd_finetune.py --max_steps 200    # CMD state on the main process
"""

from __future__ import annotations

import sys
from pathlib import Path

from hf_efftrain import Trajectory
from hf_efftrain.cmd import CMDCallback, fit_cmd
from hf_efftrain.cmd.plots import plot_all
from hf_efftrain.finetune import DEMO_DEFAULTS, build_classification_trainer, parse_classification_args, report_metrics

CMD_DEFAULTS = {
    **DEMO_DEFAULTS,
    "output_dir": "outputs/cmd_finetune",
    "max_steps": 200,
    "cmd_online": True,
    "cmd_every": 4,
    "cmd_warmup": 10,
    "cmd_modes": 5,
}


def main(argv: list[str] | None = None) -> dict[str, float]:
    script, args = parse_classification_args(CMD_DEFAULTS, argv)
    trainer = build_classification_trainer(script, args)
    trainer.train()
    metrics = trainer.evaluate()
    callback = next((c for c in trainer.callback_handler.callbacks if isinstance(c, CMDCallback)), None)
    if callback is not None and callback.ready and args.world_size == 1:
        with callback.swapped(trainer.model):  # CMD weights evaluated like an EMA, then the last weights return
            metrics.update(trainer.evaluate(metric_key_prefix="eval_cmd"))
        metrics.update({f"cmd_{k}": v for k, v in callback.report(trainer.model).items() if k != "embedding_history"})
    if args.snapshot_every and trainer.is_world_process_zero():
        trainer.save_model(args.output_dir)  # the base folder `hf-efftrain cmd reconstruct` rebuilds models from
        traj = Trajectory(args.resolved_snapshot_dir)
        result = fit_cmd(traj, modes=args.cmd_modes, candidates=args.cmd_candidates, base_model=args.output_dir)
        result.save(Path(args.output_dir) / "cmd_posthoc")
        plot_all(result, Path(args.output_dir) / "cmd_posthoc" / "plots")
        metrics["posthoc_relative_displacement_error"] = result.stats["relative_displacement_error"]
    return report_metrics(trainer, metrics)


if __name__ == "__main__":
    main(sys.argv[1:])
