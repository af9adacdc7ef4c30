"""``CMDCallback``: schedules online and embedded CMD during ``Trainer.train`` and makes them resumable.

Every ``every`` optimizer steps it takes a snapshot. The first ``warmup`` snapshots go to
``<output_dir>/cmd_warmup/`` and are then fitted post-hoc (streaming) to freeze the modes (their profiles and
statistics go to ``<output_dir>/cmd_modes.json``); later snapshots
update the running least-squares sums in O(N). With ``embed_every`` > 0, every ``embed_every`` snapshots the
least-moving tensors (or, with ``embed_order="input_first"``, the next ones from the input side) are embedded
(see :mod:`hf_efftrain.cmd.embedded`). State is written into each
``checkpoint-N/`` (``cmd_state.safetensors`` + ``cmd_state.json``) and read back on resume. The online state
lives on the main process only; with several processes, embedding steps are taken by all of them together (the
main process chooses and broadcasts, see :mod:`hf_efftrain.cmd.embedded`). Example::

    callback = CMDCallback("runs/demo", every=5, warmup=10, modes=5)
    trainer.add_callback(callback)
    trainer.train()
    with callback.swapped(trainer.model):               # evaluate θ̂ like an EMA
        metrics = trainer.evaluate(metric_key_prefix="eval_cmd")
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from hf_efftrain.atomic import atomic_directory, write_json, write_safetensors
from hf_efftrain.budget import resolve_steps
from hf_efftrain.cmd.embedded import Embedding, embed_tensors, input_first_limit, matmul_weight_sizes
from hf_efftrain.cmd.online import OnlineCMD
from hf_efftrain.cmd.paired_files import new_stamp, read_paired
from hf_efftrain.cmd.posthoc import fit_cmd
from hf_efftrain.distributed import broadcast_from_main, process_count
from hf_efftrain.errors import CMDFitError, CMDNotReadyError
from hf_efftrain.log import get_logger
from hf_efftrain.trajectory import CHECKPOINT_PATTERN, Trajectory, save_snapshot, trainable_state

logger = get_logger("hf_efftrain.cmd")
STATE_TENSORS, STATE_JSON = "cmd_state.safetensors", "cmd_state.json"
MODES_JSON = "cmd_modes.json"


class CMDCallback(TrainerCallback):
    """Online CMD weights alongside training, optionally embedding converged tensors (see module docstring)."""

    def __init__(
        self,
        output_dir: str | Path,
        every: float = 10,
        warmup: int = 20,
        modes: int = 5,
        forgetting: float = 1.0,
        candidates: int = 1000,
        seed: int = 0,
        embed_every: int = 0,
        embed_fraction: float = 0.1,
        embed_max: float = 0.5,
        embed_order: str = "movement",
        save_model: bool = True,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.every, self.warmup, self.modes, self.candidates, self.seed = every, warmup, modes, candidates, seed
        self.forgetting = forgetting
        self.embed_every, self.embed_fraction, self.embed_max = embed_every, embed_fraction, embed_max
        self.embed_order = embed_order
        self.save_model = save_model
        self._reset()

    @classmethod
    def from_args(cls, args) -> CMDCallback:
        """Build from the ``cmd_*`` fields of ``EfficientTrainingArguments`` (through :class:`CMDConfig`)."""
        return cls(args.output_dir, **args.cmd_config().to_dict())

    def _reset(self) -> None:
        self.snapshots = 0
        self.online: OnlineCMD | None = None
        self.embedding = Embedding()
        self.history: list[dict] = []  # one entry per embedding step

    @property
    def warmup_dir(self) -> Path:
        """Where the warm-up snapshots wait until the modes are fitted (removed at the start of a fresh run)."""
        return self.output_dir / "cmd_warmup"

    @property
    def ready(self) -> bool:
        """True once the warm-up is over and the modes are frozen."""
        return self.online is not None

    # ---- events ------------------------------------------------------------------------------------------
    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """Resolve the snapshot interval; restore the online state on resume, or clear an old run's warm-up."""
        self._reset()
        self.every_steps = resolve_steps(self.every, state.max_steps)  # a fraction (0, 1) is a share of max_steps
        if state.global_step > 0:
            self._restore(args, state, kwargs.get("model"), kwargs.get("optimizer"))
        elif state.is_world_process_zero and self.warmup_dir.exists():
            shutil.rmtree(self.warmup_dir)  # a fresh run must not reuse an old run's warm-up
            (self.output_dir / MODES_JSON).unlink(missing_ok=True)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """Move embedded tensors along a·r(t)+b, and every ``every`` steps take a snapshot (all processes)."""
        model = kwargs["model"]
        self.embedding.apply(model)  # embedded tensors follow their references (on every process)
        if state.global_step % self.every_steps == 0:  # every process counts snapshots: they embed together
            self._snapshot(state.global_step, model, kwargs.get("optimizer"), state.is_world_process_zero)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """Write the online state into the new ``checkpoint-N/`` (main process) so that a resumed run continues it."""
        if state.is_world_process_zero:
            self._write_state(Path(args.output_dir) / f"checkpoint-{state.global_step}")

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """Write ``cmd_report.json`` and, with ``save_model``, the CMD weights to ``cmd_model/`` (main process)."""
        if not state.is_world_process_zero or self.online is None:
            return
        model = kwargs["model"]
        write_json(self.output_dir / "cmd_report.json", self.report(model))
        if self.save_model:
            with self.swapped(model), atomic_directory(self.output_dir / "cmd_model") as tmp:
                model.save_pretrained(tmp)
                processing_class = kwargs.get("processing_class")
                if processing_class is not None:
                    processing_class.save_pretrained(tmp)

    # ---- the work ----------------------------------------------------------------------------------------
    def _snapshot(self, step: int, model: nn.Module, optimizer, main: bool) -> None:
        """Warm-up snapshot or online update on the main process; on an embedding step, every process embeds."""
        self.snapshots += 1
        since = self.snapshots - self.warmup
        if main and since <= 0:
            save_snapshot(self.warmup_dir, step, trainable_state(model))
            if since == 0:
                self._freeze_modes(model)
        elif main:
            self.online.update(dict(model.named_parameters()))
        if self.embed_every and since > 0 and since % self.embed_every == 0:
            self._embed(step, model, optimizer, main)

    def _freeze_modes(self, model: nn.Module) -> None:
        references = None  # input_first: no reference inside the prefix it may embed, or it would stop there
        if self.embed_every and self.embed_order == "input_first":
            names = [n for n, p in model.named_parameters() if p.requires_grad]
            references = set(names) - input_first_limit(names, matmul_weight_sizes(model), self.embed_max)
        result = fit_cmd(
            Trajectory(self.warmup_dir), self.modes, self.candidates, self.seed, reference_tensors=references
        )
        self.online = OnlineCMD.from_result(result, self.forgetting)
        write_json(self.output_dir / MODES_JSON, result.modes_record())  # for `hf-efftrain report`
        logger.info("CMD: %d modes frozen after %d warm-up snapshots", self.online.num_modes, self.snapshots)
        if self.embed_every:
            self.embedding.remember(self.online)

    def _embed(self, step: int, model: nn.Module, optimizer, main: bool) -> None:
        """The main process chooses (it alone holds the online state); the others embed what it chose."""
        chosen: list[str] = []
        if main:
            params = dict(model.named_parameters())
            work = matmul_weight_sizes(model) if self.embed_order == "input_first" else None  # movement counts numel
            chosen = self.embedding.choose(
                self.online, params, self.embed_fraction, self.embed_max, self.embed_order, work
            )
            self.embedding.embed(chosen, self.online, model, optimizer)
            self.embedding.remember(self.online)
        if process_count() > 1:
            shared = broadcast_from_main(self.embedding.share(chosen) if main else None)
            if not main:
                chosen = shared["names"]
                self.embedding.adopt(shared, model, optimizer)
        self.embedding.apply(model)
        report = self.embedding.report(model)
        self.history.append({"step": step, "newly_embedded": len(chosen), **report})
        logger.info("CMD: step %d, embedded %.1f%% of the parameters", step, 100 * report["embedded_fraction"])

    # ---- CMD weights, like an EMA ------------------------------------------------------------------------
    def cmd_weights(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """θ̂(t) = a·r(t) + b for every tracked tensor, at the model's current reference values."""
        if self.online is None:
            raise CMDNotReadyError(
                f"CMD weights exist only after {self.warmup} warm-up snapshots ({self.snapshots} taken so far)"
            )
        params = dict(model.named_parameters())
        weights = self.online.weights(params, [n for n in self.online.labels if n not in self.online.frozen])
        for name in self.online.frozen:  # embedded: its moments stopped, its value already is a·r(t) + b
            weights[name] = params[name].detach().clone()
        return weights

    @contextmanager
    def swapped(self, model: nn.Module) -> Iterator[nn.Module]:
        """Temporarily load the CMD weights into ``model`` (e.g. to evaluate or save them), then restore."""
        weights = self.cmd_weights(model)
        params = dict(model.named_parameters())
        originals = {name: params[name].detach().clone() for name in weights}
        with torch.no_grad():
            for name, value in weights.items():
                params[name].copy_(value)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, value in originals.items():
                    params[name].copy_(value)

    def report(self, model: nn.Module) -> dict:
        """Snapshots taken, modes, and (embedded CMD) the fraction embedded and the work saved."""
        out = {"snapshots": self.snapshots, "modes": self.online.num_modes if self.online else None}
        out.update(self.embedding.report(model))
        out["embedding_history"] = self.history
        return out

    # ---- resume ------------------------------------------------------------------------------------------
    def _write_state(self, folder: Path) -> None:
        tensors = {}
        if self.online is not None:
            tensors.update({f"online:{k}": v for k, v in self.online.state_tensors().items()})
            tensors.update({f"embedding:{k}": v for k, v in self.embedding.state_tensors().items()})
        meta = {
            "snapshots": self.snapshots,
            "reference_ids": [list(r) for r in self.online.reference_ids] if self.online else None,
            "embedded": sorted(self.embedding.a),
            "history": self.history,
        }
        meta["state_id"] = new_stamp()  # pairs the two files: a kill between the writes is detected on resume
        write_safetensors(folder / STATE_TENSORS, tensors or {"empty": torch.zeros(1)}, {"state_id": meta["state_id"]})
        write_json(folder / STATE_JSON, meta)

    def _restore(self, args: TrainingArguments, state: TrainerState, model: nn.Module, optimizer) -> None:
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not (folder / STATE_JSON).is_file():
            last = get_last_checkpoint(args.output_dir)
            folder = Path(last) if last else folder
        meta, tensors = read_state(folder)
        self.snapshots, self.history = meta["snapshots"], meta["history"]
        if meta["reference_ids"] is not None:
            part = lambda prefix: {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}  # noqa: E731
            ids = [(n, int(i)) for n, i in meta["reference_ids"]]
            if state.is_world_process_zero:  # the online state lives on the main process only
                self.online = OnlineCMD.from_state(part("online:"), ids, meta["embedded"])
            self.embedding = Embedding.from_state(part("embedding:"), part("online:"), ids)
            embed_tensors(model, meta["embedded"], optimizer)
        if state.is_world_process_zero:
            self._drop_warmup_after(state.global_step)

    def _drop_warmup_after(self, step: int) -> None:
        """Warm-up snapshots newer than the checkpoint belong to the killed run's future: remove them."""
        if not self.warmup_dir.is_dir():
            return
        for child in self.warmup_dir.iterdir():
            match = CHECKPOINT_PATTERN.match(child.name)
            if match and int(match.group(2)) > step:
                shutil.rmtree(child)


def read_state(folder: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The CMD state saved in a checkpoint, both files from the same save; one clear error otherwise."""
    json_path, tensor_path = folder / STATE_JSON, folder / STATE_TENSORS
    if not json_path.is_file() or not tensor_path.is_file():
        raise CMDFitError(
            f"{folder} has no CMD state ({STATE_JSON} + {STATE_TENSORS}): resume CMD from a checkpoint saved by a "
            "run with cmd_online or cmd_embed_every (in the same output_dir)"
        )
    try:
        meta, tensors, header = read_paired(json_path, tensor_path)
    except ValueError as err:
        raise CMDFitError(f"{folder}: unreadable CMD state ({err}); resume from an earlier checkpoint") from None
    required = {"snapshots", "history", "reference_ids", "embedded"}
    if not isinstance(meta, dict) or not required <= set(meta):
        raise CMDFitError(f"{json_path} is not a CMD state file; resume from an earlier checkpoint")
    if meta.get("state_id") != header.get("state_id"):
        raise CMDFitError(
            f"{folder}: the two CMD state files come from different saves; resume from another checkpoint"
        )
    return meta, tensors
