"""``TWACallback``: when to collect, when to switch to the TWA phase, and when to stop. No math here.

Timeline of a run with ``max_steps = N``, ``twa_start = s``, ``twa_every = k``, ``twa_steps = T``:

* steps 1 … sN: ordinary training; θ is collected every k steps and at step sN;
* at step sN: the basis is built, θ ← plain average of the checkpoints;
* steps sN+1 … sN+T: the Trainer computes gradients as usual, but its optimizer step is replaced by the
  TWA step (see :mod:`optimize`: the TWA solver steps and clears ``.grad``, so the Trainer's optimizer
  skips every parameter);
* after step sN+T training stops: the model holds the TWA solution and is saved/evaluated/pushed as usual
  (stopping before ``max_steps`` is logged, ``twa_stopped_early_at_step`` appears in the logs, and the Trainer
  still writes the final checkpoint and runs the final evaluation its step strategies ask for);
  ``<output_dir>/twa_history.json`` records the collected steps, the report and the coefficients at every TWA step
  (see :mod:`history`; ``hf-efftrain report`` plots them).

Resume: at every Trainer save, each process writes its share of the TWA state (collected basis rows or the
solver with its optimizer) to ``checkpoint-N/twa_state-rank{r}.pt``; ``train(resume_from_checkpoint=...)``
reads it back in ``on_train_begin``. Example::

    trainer.add_callback(TWACallback(TWAConfig(start=0.5, every=10, steps=20)))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import IntervalStrategy, SaveStrategy

from hf_efftrain.atomic import atomic_file, write_json
from hf_efftrain.distributed import barrier, process_position
from hf_efftrain.errors import TWAError
from hf_efftrain.links import need_whole_gradients, whole_gradients_done
from hf_efftrain.log import get_logger
from hf_efftrain.trajectory import save_snapshot, trainable_state
from hf_efftrain.twa.collect import Collector, Solver, add_from_folder, count_checkpoints, solver_from_state
from hf_efftrain.twa.config import TWAConfig
from hf_efftrain.twa.flat import TrainableView
from hf_efftrain.twa.history import coefficient_matrix, step_coefficients
from hf_efftrain.twa.holdout import HoldoutBatches
from hf_efftrain.twa.memory import BasisPlan
from hf_efftrain.twa.norm import recompute_norm_statistics

logger = get_logger("hf_efftrain.twa")
# A phase that moved the weights less than this many checkpoint spreads did next to nothing: on SmolLM2 + LoRA,
# twa_lr 0.05 / 0.2 moved 0.016 / 0.064 spreads and changed the loss by 0.001 nats at most, while the rates that gained
# moved 0.3-2.6 (benchmarks/results/causal_lm_twa_tuning_moved.json)
MOVED_TOO_LITTLE = 0.1
STATE_FILE = "twa_state-rank{rank}.pt"


class TWACallback(TrainerCallback):
    """Collect checkpoints, then run a short TWA phase whose solution becomes the final weights.

    ``report`` holds what happened: checkpoints used, basis rank and memory per process, phase timings.
    When the TWA phase begins (or resumes) it announces on the model that whole gradients are needed
    (:mod:`hf_efftrain.links`): methods that skip gradient work (MAT) hand back every parameter there, in any
    Trainer. ``on_twa_phase`` functions are called at the same moment. Fractional ``every``/``steps`` are resolved
    against ``max_steps`` at train begin (``config``; the config as given is ``requested``).
    """

    def __init__(self, config: TWAConfig | None = None, norm_batches: int | None = 100, **knobs: Any) -> None:
        self.requested = config if config is not None else TWAConfig(**knobs)
        self.config = self.requested  # resolved against max_steps at train begin
        self.norm_batches = norm_batches
        self.phase = "collect"  # collect -> twa -> done
        self.collected_steps: list[int] = []
        self.report: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []  # coefficients after each TWA step
        self.collector: Collector | None = None
        self.solver: Solver | None = None
        self.rank, self.world = process_position()
        self.on_twa_phase: list[Callable[[], None]] = []
        self._stopped_at: int | None = None  # step of an early stop, until it is logged
        self.holdout: HoldoutBatches | None = None  # TWA-v: set by EfficientTrainer, which feeds its batches

    # ---- events ------------------------------------------------------------------------------------------
    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """Plan collection and the TWA phase for this run; restore a resumed state or start TWA at once."""
        self.config = self.requested.for_run(state.max_steps)  # fractions of max_steps become steps
        if self.config.holdout and self.holdout is None:
            raise TWAError(
                "twa_holdout needs EfficientTrainer, which feeds the TWA phase from the held-out rows; with another "
                "Trainer, set twa_holdout=0 and run train_twa on held-out batches after training"
            )
        whole_gradients_done(kwargs["model"])  # a new run: nothing announced yet
        self.rank, self.world = process_position()
        self.view = TrainableView(kwargs["model"])
        self.start_step = self.config.start_step(state.max_steps)
        self.plan_steps = set(self.config.collection_steps(state.max_steps))
        planned = len(self.plan_steps) or count_checkpoints(self.config.checkpoints_from)
        plan = BasisPlan(self.view.dim, planned, self.world, self.rank, self.config.bits, self.config.keeps_last)
        plan.check(self.config.max_basis_mb, self.view.device)
        logger.info(
            "TWA: %d checkpoints of %s trainable parameters; basis %.1f MiB on this process (peak %.1f MiB)",
            planned,
            f"{self.view.dim:,}",
            plan.basis_mb,
            plan.peak_mb,
        )
        self.report.update(planned_checkpoints=planned, planned_basis_mb=plan.basis_mb, world_size=self.world)
        self.collector = Collector(self.view, self.config)
        self._marks = {"begin": time.perf_counter()}
        if self.holdout is not None:
            self.holdout.restart_at(0)
        if state.global_step > 0:
            self._restore(Path(args.output_dir) / f"checkpoint-{state.global_step}", kwargs["model"])
        elif self.start_step == 0:
            self._begin_twa(kwargs["model"])

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """Collect at the planned steps; begin the TWA phase at its start step; stop once it is done."""
        step = state.global_step
        if self.phase == "collect":
            if step in self.plan_steps:
                self._collect(step, kwargs["model"])
            if step >= self.start_step:
                self._begin_twa(kwargs["model"])
        elif self.phase == "twa" and self.solver.steps_done >= self.config.steps:
            self.phase = "done"
            self._marks["done"] = time.perf_counter()
            self._report_movement()
            control.should_training_stop = True
            if step < state.max_steps:
                self._stop_early(args, state, control)
        return control

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs=None, **kwargs):
        """After an early stop, add the step it happened at to the last log line."""
        if self._stopped_at is None or logs is None:
            return
        logs["twa_stopped_early_at_step"] = self._stopped_at  # the progress bar prints it with the last losses
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1]["twa_stopped_early_at_step"] = self._stopped_at
        self._stopped_at = None

    def on_pre_optimizer_step(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """In the TWA phase, replace the optimizer's update by one step on the coefficients."""
        if self.phase == "twa":
            self.solver.step()
            coefficients = step_coefficients(self.solver, self._rows())
            self.history.append({"step": state.global_step + 1, "coefficients": coefficients})

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """Write this process's TWA state (phase, basis, solver) into the new checkpoint folder."""
        saved = {
            "phase": self.phase,
            "collected_steps": self.collected_steps,
            "history": self.history,
            "checkpoints": self.report.get("checkpoints"),
            "spread": self.report.get("spread"),
            "collector": self.collector.state_dict() if self.collector is not None else None,
            "solver": self.solver.state_dict() if self.solver is not None else None,
            "holdout_batches": self.holdout.served if self.holdout is not None else 0,
        }
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        with atomic_file(folder / STATE_FILE.format(rank=self.rank)) as tmp:
            torch.save(saved, tmp)

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """After a TWA phase: recompute batch-norm statistics (if any), write the timings and history."""
        whole_gradients_done(kwargs["model"])
        if self.phase == "collect":
            logger.warning("TWA: training ended before the TWA phase began; the weights are not a TWA solution")
            return
        loader = kwargs.get("train_dataloader")
        if loader is not None and recompute_norm_statistics(kwargs["model"], loader, self.norm_batches):
            logger.info("TWA: batch-norm statistics recomputed for the TWA weights")
        self._timings()
        self._write_history(args, state)

    # ---- phases ------------------------------------------------------------------------------------------
    def _stop_early(self, args: TrainingArguments, state: TrainerState, control: TrainerControl) -> None:
        """Say that the run ends before ``max_steps``, and keep the end-of-run save and evaluation it would get."""
        logger.info("TWA: phase done at step %d of %d, stopping early", state.global_step, state.max_steps)
        self._stopped_at = state.global_step
        control.should_log = True
        request_end_of_run(args, state, control)

    def _collect(self, step: int, model: torch.nn.Module) -> None:
        began = time.perf_counter()
        if self.config.snapshot_dir:
            if self.rank == 0:
                save_snapshot(self.config.snapshot_dir, step, trainable_state(model))
        else:
            self.collector.add(self.view.vector())
        self.collected_steps.append(step)
        spent = time.perf_counter() - began
        self.report["collect_overhead_seconds"] = self.report.get("collect_overhead_seconds", 0.0) + spent

    def _begin_twa(self, model: torch.nn.Module) -> None:
        self._marks["build"] = time.perf_counter()
        if self.config.snapshot_dir:
            barrier()  # the main process has written every snapshot
            folders = [Path(self.config.snapshot_dir) / f"snapshot-{s}" for s in self.collected_steps]
            add_from_folder(self.collector, folders)
        elif self.config.checkpoints_from:
            add_from_folder(self.collector, self.config.checkpoints_from)
        spread = self.collector.spread  # before build: building frees w₁, the spread's origin
        self.solver = self.collector.build(total_steps=self.config.steps)  # θ ← the start point (twa_init)
        self.report.update(
            checkpoints=self.collector.count,
            basis_memory_mb=self.solver.memory_mb,
            spread=spread,
            trust_radius=self.solver.radius,
        )
        if self.config.form == "subspace":
            self.report.update(basis_rank=self.solver.basis.size, dropped=self.solver.basis.dropped)
        self.collector = None  # raw checkpoints and running sums are no longer needed
        self.phase = "twa"
        self._marks["twa"] = time.perf_counter()
        logger.info("TWA: phase begins with %s", self.report)
        self._announce_phase(model)

    def _announce_phase(self, model: torch.nn.Module) -> None:
        need_whole_gradients(model)  # MAT (as any callback, in any Trainer) releases its gates
        for listener in self.on_twa_phase:
            listener()

    def _restore(self, folder: Path, model: torch.nn.Module) -> None:
        file = folder / STATE_FILE.format(rank=self.rank)
        if not file.is_file():
            raise TWAError(
                f"{file} is missing: resume TWA from a checkpoint saved by a run with twa=True "
                "(in the same output_dir, with the same number of processes)"
            )
        try:
            saved = torch.load(file, weights_only=True)
        except Exception as err:  # truncated or foreign pickles raise several types
            raise TWAError(f"{file} is unreadable ({type(err).__name__}); resume from an earlier checkpoint") from None
        if not isinstance(saved, dict) or not {"phase", "collected_steps", "collector", "solver"} <= set(saved):
            raise TWAError(f"{file} is not a TWA state file; resume from a checkpoint saved by a run with twa=True")
        self.phase, self.collected_steps = saved["phase"], list(saved["collected_steps"])
        self.history = list(saved.get("history", []))
        if self.holdout is not None:
            self.holdout.restart_at(int(saved.get("holdout_batches", 0)))
        if saved.get("checkpoints") is not None:
            self.report["checkpoints"] = saved["checkpoints"]
        if saved.get("spread") is not None:  # states saved before it was kept have none: no movement report
            self.report["spread"] = saved["spread"]
        if saved["collector"] is not None:
            self.collector.load_state_dict(saved["collector"])
        else:
            self.collector = None
        if saved["solver"] is not None:
            self.solver = solver_from_state(self.view, self.config, saved["solver"], self.config.steps)
        logger.info("TWA: resumed in phase %r from %s", self.phase, file)
        if self.phase != "collect":
            self._announce_phase(model)

    def _report_movement(self) -> None:
        """How far the phase moved the weights, in checkpoint spreads; one warning line when it barely moved
        (why: a learning rate too small for the model leaves TWA's result equal to its start, silently)."""
        spread = self.report.get("spread")
        if not spread:
            return
        moved = self.solver.distance_from_start() / spread
        self.report["moved_spreads"] = moved
        if moved < MOVED_TOO_LITTLE and self.rank == 0:  # every process moved alike: one line per run
            logger.warning(
                "TWA: the phase moved the weights only %.3f checkpoint spreads in %d steps: twa_lr=%g is probably "
                "too small for this model (a LoRA adapter on SmolLM2 wanted 4; see docs/twa.md)",
                moved, self.config.steps, self.config.lr,
            )  # fmt: skip

    def _rows(self) -> int:
        """Checkpoints in the TWA basis (all processes together)."""
        return int(self.report.get("checkpoints") or len(self.collected_steps))

    def _write_history(self, args: TrainingArguments, state: TrainerState) -> None:
        """``twa_history.json`` on the main process (the gathering itself is collective: every process calls it)."""
        final = coefficient_matrix(self.solver, self._rows()) if self.solver is not None else None
        if not state.is_world_process_zero or final is None:
            return
        record = {
            "form": self.config.form,
            "collected_steps": self.collected_steps,
            "report": self.report,
            "history": self.history,
            "final_coefficients": final.tolist(),
        }
        if final.dim() == 2:
            record["tensor_names"] = self.view.names
        write_json(Path(args.output_dir) / "twa_history.json", record)

    def _timings(self) -> None:
        marks, now = self._marks, time.perf_counter()
        if "build" in marks:
            self.report["collect_seconds"] = marks["build"] - marks["begin"]
            self.report["build_seconds"] = marks.get("twa", now) - marks["build"]
        self.report["twa_seconds"] = marks.get("done", now) - marks.get("twa", marks["begin"])
        if self.solver is not None:
            self.report["confined_steps"] = self.solver.confined_steps


def request_end_of_run(args: TrainingArguments, state: TrainerState, control: TrainerControl) -> None:
    """Ask for what ``DefaultFlowCallback`` asks for when a run reaches ``max_steps``: a last checkpoint and evaluation.

    Why: that callback only does so at ``max_steps``; a run stopped earlier through ``should_training_stop``
    would end without the final checkpoint (``save_strategy="steps"``) or evaluation (``eval_strategy="steps"``)
    the user asked for. Epoch strategies need nothing: the Trainer ends the epoch, and saves there, after a stop.
    """
    step = state.global_step
    if args.eval_strategy == IntervalStrategy.STEPS and step % state.eval_steps != 0 and args.eval_delay <= step:
        control.should_evaluate = True
    if args.save_strategy == SaveStrategy.STEPS:
        control.should_save = True
