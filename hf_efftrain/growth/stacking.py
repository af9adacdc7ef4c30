"""Adaptive gradual stacking: train a shallow model, grow it in stages, let LAG pick each stage's stacking.

Gradual stacking (Reddi et al. 2023) and MIDAS grow a model a few layers at a time during pre-training. Two
decisions are made at every stage: *when* to grow (``trigger``: a fixed number of steps, or a plateau of the
training loss) and *how* (``candidates``: depth strategies applied to the current model; with more than one
and ``lag_steps > 0`` each is trained ``lag_steps`` steps by :func:`~hf_efftrain.growth.lag.select_growth`
and the best is kept). Growth changes the parameter set, so every stage is its own ``EfficientTrainer`` run;
AdamW moments are carried over for parameters that map one-to-one (kept tensors, and copied layers take
their source layer's moments), the others start fresh.

Resuming: each finished stage writes ``stage-<k>/`` (model, optimizer moments by name, ``record.json`` with
the growth decision); a rerun with the same output folder skips finished stages and resumes an unfinished
one from its last Trainer checkpoint. Example::

    config = StackingConfig(final_layers=6, grow_by=2, stage_steps=200, candidates=[{"strategy": "top_k", "k": 2},
                            {"strategy": "middle", "block": 2}], lag_steps=20)
    model, history = gradual_stack(model, train, args, config)
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

from hf_efftrain.architectures import get_architecture
from hf_efftrain.atomic import atomic_directory, write_json
from hf_efftrain.errors import GrowthError
from hf_efftrain.growth.assemble import layers_prefix
from hf_efftrain.growth.depth import LayerRef, grow_depth
from hf_efftrain.growth.lag import select_growth
from hf_efftrain.growth.recipe import depth_plan


@dataclass
class StackingConfig:
    """Knobs of gradual stacking (serializable; saved in every stage record)."""

    final_layers: int
    grow_by: int = 2
    stage_steps: int = 100
    trigger: str = "fixed"
    plateau_window: int = 10
    plateau_tolerance: float = 0.01
    min_stage_steps: int = 20
    candidates: list[dict[str, Any]] = field(default_factory=lambda: [{"strategy": "top_k", "k": 2}])
    lag_steps: int = 0
    carry_optimizer: bool = True

    def __post_init__(self) -> None:
        if self.trigger not in ("fixed", "plateau"):
            raise GrowthError(f"trigger must be 'fixed' or 'plateau', got {self.trigger!r}")
        if self.grow_by < 1 or self.stage_steps < 1 or not self.candidates:
            raise GrowthError("grow_by and stage_steps must be >= 1 and candidates non-empty")
        if self.trigger == "plateau" and self.plateau_window < 1:
            raise GrowthError("plateau_window must be >= 1")


class PlateauStopCallback(TrainerCallback):
    """Stop a stage when the mean training loss of the last ``window`` steps improved by less than
    ``tolerance`` (relative) over the ``window`` before, after at least ``min_steps`` steps.

    Its loss history is exported in ``trainer_state.json`` and read back when a run resumes.
    """

    def __init__(self, window: int = 10, tolerance: float = 0.01, min_steps: int = 20) -> None:
        self.window, self.tolerance, self.min_steps = window, tolerance, min_steps
        self.losses: list[float] = []
        self.stopped_at: int | None = None

    def plateaued(self) -> bool:
        """Whether the last ``window`` losses improved by less than ``tolerance`` on the ``window`` before."""
        if len(self.losses) < max(2 * self.window, self.min_steps):
            return False
        recent = sum(self.losses[-self.window :]) / self.window
        before = sum(self.losses[-2 * self.window : -self.window]) / self.window
        return recent > before * (1 - self.tolerance)

    def on_train_begin(self, args, state, control, **kwargs):
        """On resume, read the loss history back from ``trainer_state.json``."""
        saved = (state.stateful_callbacks or {}).get(type(self).__name__)
        if state.global_step > 0 and saved:
            self.losses = list(saved["attributes"]["losses"])

    def on_log(self, args, state, control, logs=None, **kwargs):
        """Record the logged training loss and stop the stage once the loss has plateaued."""
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))
            if self.plateaued():
                self.stopped_at = state.global_step
                control.should_training_stop = True
        return control

    def state(self) -> dict:
        """The loss history and knobs, exported into ``trainer_state.json`` (``ExportableState``)."""
        return {
            "args": {"window": self.window, "tolerance": self.tolerance, "min_steps": self.min_steps},
            "attributes": {"losses": self.losses},
        }


def parameter_sources(model: PreTrainedModel, plan: list[LayerRef]) -> dict[str, str]:
    """Grown-model parameter name -> the source parameter it was copied from (layers remapped by ``plan``)."""
    prefix = layers_prefix(model)
    mapping = {}
    for name, _ in model.named_parameters():
        if name.startswith(prefix):
            index, rest = name[len(prefix) :].split(".", 1)
            mapping[f"{prefix}{index}.{rest}"] = f"{prefix}{plan[int(index)][1]}.{rest}"
        else:
            mapping[name] = name
    return mapping


def optimizer_state_by_name(model: PreTrainedModel, optimizer) -> dict[str, dict[str, torch.Tensor]]:
    """The optimizer's per-parameter state keyed by parameter name (tensors cloned)."""
    state = getattr(optimizer, "optimizer", optimizer).state
    return {
        n: {k: v.detach().clone() if torch.is_tensor(v) else v for k, v in state[p].items()}
        for n, p in model.named_parameters()
        if p in state
    }


def load_optimizer_state(model: PreTrainedModel, optimizer, by_name: dict[str, dict], sources: dict[str, str]) -> int:
    """Give each parameter its source's state where shapes agree; returns how many parameters got one."""
    inner = getattr(optimizer, "optimizer", optimizer)
    carried = 0
    for name, param in model.named_parameters():
        saved = by_name.get(sources.get(name, ""))
        if saved and all(not torch.is_tensor(v) or v.dim() == 0 or v.shape == param.shape for v in saved.values()):
            inner.state[param] = {k: v.clone() if torch.is_tensor(v) else v for k, v in saved.items()}
            carried += 1
    return carried


def _stage_args(args, output_dir: Path, steps: int, stage: int):
    """``args`` for stage ``stage``: its own folder, length and data order (stages must not replay one order)."""
    args = copy.deepcopy(args)
    args.output_dir = str(output_dir)
    args.max_steps = steps
    args.data_seed = (args.data_seed if args.data_seed is not None else args.seed) + stage
    return args


def _train_stage(model, index: int, moments, sources, train_dataset, args, config: StackingConfig, **data):
    from hf_efftrain.trainer import EfficientTrainer

    run_dir = Path(args.output_dir) / f"stage-{index}-run"
    callbacks = []
    if config.trigger == "plateau":
        callbacks.append(PlateauStopCallback(config.plateau_window, config.plateau_tolerance, config.min_stage_steps))
    trainer = EfficientTrainer(
        model=model,
        args=_stage_args(args, run_dir, config.stage_steps, index),
        train_dataset=train_dataset,
        callbacks=callbacks,
        **data,
    )
    carried = 0
    if moments and config.carry_optimizer:
        trainer.create_optimizer()
        carried = load_optimizer_state(model, trainer.optimizer, moments, sources)
    resume = get_last_checkpoint(str(run_dir)) if run_dir.is_dir() else None
    trainer.train(resume_from_checkpoint=resume)
    losses = [float(e["loss"]) for e in trainer.state.log_history if "loss" in e]
    record = {
        "stage": index,
        "layers": get_architecture(model).num_layers(model.config),
        "steps": trainer.state.global_step,
    }
    record.update({"carried_optimizer_tensors": carried, "train_losses": losses})
    return record, optimizer_state_by_name(model, trainer.optimizer)


def _choose_plan(model, depth: int, index: int, train_dataset, args, config: StackingConfig, eval_dataset, **data):
    target = min(depth + config.grow_by, config.final_layers)
    plans = {}
    for candidate in config.candidates:
        name = ",".join(f"{k}={v}" for k, v in candidate.items())
        plans[name] = depth_plan({**candidate, "target_layers": target}, depth)
    if len(plans) == 1 or config.lag_steps < 1:
        name = next(iter(plans))
        return name, plans[name], None
    # the probes are the first lag_steps of the next stage: its data order and its schedule, scored on eval_dataset
    lag_args = _stage_args(args, Path(args.output_dir) / f"stage-{index}-lag", config.stage_steps, index + 1)
    builders = {n: (lambda p=p: grow_depth([model], p)) for n, p in plans.items()}
    schedule = max(config.stage_steps, config.lag_steps)
    result = select_growth(
        builders,
        train_dataset,
        config.lag_steps,
        args=lag_args,
        eval_dataset=eval_dataset,
        schedule_steps=schedule,
        **data,
    )
    return result.pick, plans[result.pick], result.to_dict()


def _save_stage(root: Path, model, moments, record: dict) -> None:
    with atomic_directory(root / f"stage-{record['stage']}") as tmp:
        model.save_pretrained(tmp / "model")
        torch.save(moments, tmp / "moments.pt")
        write_json(tmp / "record.json", record)


def _resume(root: Path, model: PreTrainedModel):
    history, index = [], 0
    while (root / f"stage-{index}" / "record.json").is_file():
        history.append(json.loads((root / f"stage-{index}" / "record.json").read_text()))
        index += 1
    if not history:
        return model, history, None, None
    folder = root / f"stage-{index - 1}"
    trained = type(model).from_pretrained(folder / "model")
    moments = torch.load(folder / "moments.pt", weights_only=True)
    return trained, history, moments, history[-1]["plan"]


def gradual_stack(
    model: PreTrainedModel, train_dataset, args, config: StackingConfig, eval_dataset=None, data_collator=None
) -> tuple[PreTrainedModel, list[dict]]:
    """Train and grow ``model`` stage by stage up to ``config.final_layers``; returns it and the stage records.

    ``args`` (``EfficientTrainingArguments``) apply to every stage, except ``max_steps`` (``stage_steps``),
    ``output_dir`` (``<output_dir>/stage-<k>-run``) and the data order (``data_seed`` + k, so no stage replays
    another's batches). LAG probes are the first ``lag_steps`` of the next stage (its data order and schedule),
    scored on ``eval_dataset`` when one is given. Rerunning with the same ``output_dir`` resumes.
    """
    root = Path(args.output_dir)
    data = {"data_collator": data_collator}
    model, history, moments, plan = _resume(root, model)
    if history and plan is None:
        return model, history
    sources = None
    if plan is not None:
        plan = [tuple(ref) for ref in plan]
        model = grow_depth([model], plan)
        sources = parameter_sources(model, plan)
    while True:
        index = len(history)
        record, moments = _train_stage(model, index, moments, sources, train_dataset, args, config, **data)
        depth = record["layers"]
        choice, plan, lag = (None, None, None)
        if depth < config.final_layers:
            choice, plan, lag = _choose_plan(model, depth, index, train_dataset, args, config, eval_dataset, **data)
        record.update({"growth": choice, "plan": plan, "lag": lag, "config": asdict(config)})
        _save_stage(root, model, moments, record)
        history.append(record)
        if plan is None:
            return model, history
        model = grow_depth([model], plan)
        sources = parameter_sources(model, plan)
