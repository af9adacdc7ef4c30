"""``cmd_*`` training arguments of online and embedded CMD (a mixin of ``EfficientTrainingArguments``).

Example (command line, through ``HfArgumentParser``)::

    python examples/finetune.py --cmd_online --cmd_every 5 --cmd_warmup 10 --cmd_modes 5 --cmd_embed_every 4
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hf_efftrain.cmd.config import CMDConfig
from hf_efftrain.errors import ArgumentsError
from hf_efftrain.method_config import config_from_arguments


@dataclass
class CMDArguments:
    """Switches of online CMD (modes frozen after a warm-up, RLS updates) and embedded CMD; see :class:`CMDConfig`."""

    cmd_online: bool = field(
        default=False, metadata={"help": "Track online CMD weights θ̂ = a·r(t) + b alongside training (like an EMA)."}
    )
    cmd_every: float = field(
        default=10, metadata={"help": "Take a CMD snapshot every N optimizer steps (a fraction < 1: of max_steps)."}
    )
    cmd_warmup: int = field(
        default=20,
        metadata={"help": "Snapshots (not steps) collected on disk before the modes are fitted and frozen."},
    )
    cmd_modes: int = field(default=5, metadata={"help": "Number of CMD modes M."})
    cmd_forgetting: float = field(
        default=1.0,
        metadata={"help": "RLS forgetting factor in (0, 1] per snapshot: < 1 makes the fit follow recent snapshots."},
    )
    cmd_candidates: int = field(default=1000, metadata={"help": "Reference candidates K clustered after warm-up."})
    cmd_seed: int = field(default=0, metadata={"help": "Seed of the candidate sampling."})
    cmd_embed_every: int = field(
        default=0,
        metadata={"help": "Embedded CMD: every N snapshots after warm-up, embed the least-moving tensors (0: off)."},
    )
    cmd_embed_fraction: float = field(
        default=0.1, metadata={"help": "Share of the not-yet-embedded parameters embedded at each embedding step."}
    )
    cmd_embed_max: float = field(default=0.5, metadata={"help": "Upper bound on the share of parameters embedded."})
    cmd_embed_order: str = field(
        default="movement",
        metadata={
            "help": "Which tensors embedded CMD takes: 'movement' (least-moving first, the paper) or 'input_first' "
            "(a growing prefix from the input side; saves its input gradients too; budgets count matrix weights).",
            "choices": ["movement", "input_first"],
        },
    )
    cmd_save_model: bool = field(
        default=True, metadata={"help": "At the end of training, save the CMD weights to <output_dir>/cmd_model."}
    )

    def cmd_config(self) -> CMDConfig:
        """The validated :class:`CMDConfig` of the ``cmd_*`` fields (``cmd_online`` is the switch, not a knob)."""
        return config_from_arguments(self, "cmd", CMDConfig)

    def _validate_cmd(self) -> None:
        """Reject settings that cannot work, with the flag to change (only when online or embedded CMD is on)."""
        if not (self.cmd_online or self.cmd_embed_every):
            return
        self.cmd_config()
        if self.cmd_embed_every and getattr(self, "world_size", 1) > 1:
            self._let_ddp_skip_embedded_tensors()

    def _let_ddp_skip_embedded_tensors(self) -> None:
        """Embedded tensors stop receiving gradients after DDP was built: it must look for unused parameters."""
        if getattr(self, "ddp_find_unused_parameters", None) is False:
            raise ArgumentsError(
                "embedded CMD with several processes needs ddp_find_unused_parameters=True (embedded tensors get no "
                "gradient, which DDP otherwise waits for): set it to True or leave it unset"
            )
        self.ddp_find_unused_parameters = True
