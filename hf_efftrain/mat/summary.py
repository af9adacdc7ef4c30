"""What MAT reports per measurement: a few scalars for every logger, and λmax as one histogram where one fits.

Why: a per-head scalar key floods every log line (72 keys on MiniLM, 270 on a 30-layer decoder) and buries the
loss. A reader needs the spread (min / median / max of λmax over attention units), how much is gated, and what
the probes cost; the full per-unit table stays in ``mat_history.json`` and the heat map. Example::

    figures = lambda_summary(lam, active, layout)       # {"mat/lambda_min": ..., "mat/heads_active_fraction": ...}
    sink = HistogramSink.for_args(args)                  # TensorBoard / W&B when they are in report_to
    sink.write("mat/lambda", lam, step)
"""

from __future__ import annotations

from typing import Any

import torch

from hf_efftrain.mat.layout import Layout


def lambda_summary(lam: torch.Tensor, active: torch.Tensor, layout: Layout) -> dict[str, float]:
    """min / median / max of λmax over attention units (and FFN blocks when measured), and active fractions."""
    figures: dict[str, float] = {}
    for label, active_key, kinds in (("", "heads_", ("head", "group")), ("ffn_", "ffn_", ("ffn",))):
        ids = [i for i, unit in enumerate(layout.units) if unit.kind in kinds]
        if not ids:
            continue
        values = lam[ids].double()
        figures[f"mat/{label}lambda_min"] = float(values.min())
        figures[f"mat/{label}lambda_median"] = float(values.median())
        figures[f"mat/{label}lambda_max"] = float(values.max())
        figures[f"mat/{active_key}active_fraction"] = float(active[ids].float().mean())
    return figures


class HistogramSink:
    """λmax histograms for the experiment trackers named in ``report_to`` that can show one.

    TensorBoard: its own ``SummaryWriter`` on ``logging_dir`` (TensorBoard merges event files of one folder).
    W&B: ``wandb.Histogram`` attached to the Trainer's next log call (``commit=False``).
    """

    def __init__(self, writers: list[Any]) -> None:
        self.writers = writers

    @classmethod
    def for_args(cls, args) -> HistogramSink:
        """Sinks for ``args.report_to`` on the main process; none elsewhere or when a tracker is missing."""
        report_to = args.report_to if isinstance(args.report_to, list) else [args.report_to]
        writers: list[Any] = []
        if "tensorboard" in report_to or "all" in report_to:
            try:
                from torch.utils.tensorboard import SummaryWriter

                writers.append(("tensorboard", SummaryWriter(log_dir=args.logging_dir)))
            except ImportError:  # Trainer itself reports the missing package
                pass
        if "wandb" in report_to or "all" in report_to:
            try:
                import wandb

                if wandb.run is not None:
                    writers.append(("wandb", wandb))
            except ImportError:
                pass
        return cls(writers)

    def write(self, tag: str, values: torch.Tensor, step: int) -> None:
        """Log ``values`` as a histogram at ``step`` to every open reporter (TensorBoard, W&B)."""
        for kind, writer in self.writers:
            if kind == "tensorboard":
                writer.add_histogram(tag, values.double().numpy(), global_step=step)
                writer.flush()
            else:
                writer.log({tag: writer.Histogram(values.double().numpy())}, commit=False)

    def close(self) -> None:
        """Close the TensorBoard writers (the W&B run is the Trainer's to finish) and stop writing."""
        for kind, writer in self.writers:
            if kind == "tensorboard":
                writer.close()
        self.writers = []
