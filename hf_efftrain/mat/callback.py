"""MATCallback: schedules :class:`MATEngine` inside any ``transformers.Trainer``; it decides *when*, not *how*.

* ``on_train_begin``: patch the model, guard the optimizer, restore gates/EMA when resuming (the state lives in
  ``trainer_state.json`` through :class:`~transformers.trainer_callback.ExportableState`).
* every forward in training: remember the batch (a reference, no copy), the probe takes its first rows;
* ``on_step_end``: every ``every`` steps measure λmax, update the EMA and the gates for the next steps;
* ``on_log``: add ``mat/*`` figures (active fractions, backward FLOPs saved, probe time and share of training time,
  the probe interval, min/median/max λmax) to Trainer's logs, so TensorBoard / W&B / ``log_history`` show them;
  λmax of every unit goes to one histogram per measurement (TensorBoard, W&B) and to ``mat_history.json``;
* ``on_train_end``: write ``mat_history.json`` and ``mat_heatmap.png`` to ``output_dir``; undo the patches.

Example::

    trainer = Trainer(model=model, args=args, train_dataset=train, callbacks=[MATCallback(MATConfig(every=10))])
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from hf_efftrain.atomic import write_json
from hf_efftrain.errors import MATConfigError
from hf_efftrain.links import listen_whole_gradients, stop_listening
from hf_efftrain.log import get_logger
from hf_efftrain.mat.config import MATConfig
from hf_efftrain.mat.engine import MATEngine
from hf_efftrain.mat.plot import plot_heatmap
from hf_efftrain.mat.summary import HistogramSink, lambda_summary

logger = get_logger("hf_efftrain.mat")


class MATCallback(TrainerCallback, ExportableState):
    """Modular adaptive training for any Trainer; ``log_lambdas=True`` adds a ``mat/lambda/L{l}.H{h}`` key per head."""

    def __init__(self, config: MATConfig | None = None, log_lambdas: bool = False) -> None:
        self.config = (config or MATConfig()).validate()
        self.log_lambdas = log_lambdas
        self.engine: MATEngine | None = None
        self._batch: dict[str, torch.Tensor] | None = None
        self._capture = None
        self._pending: dict[str, float] = {}
        self._histograms: HistogramSink | None = None
        self._started = self._measured_before = 0.0
        self.released = False

    def release(self) -> None:
        """Train every head from now on and stop measuring (e.g. when TWA's phase needs whole gradients)."""
        self.released = True
        if self.engine is not None:
            self.engine.apply_gates(torch.ones_like(self.engine.active))
            logger.info("MAT: released, all %d modules train from here", len(self.engine.active))

    # ---- ExportableState ------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Knobs, gates and λmax history, exported into ``trainer_state.json`` so that a resumed run continues."""
        attributes = {**self.engine.state_dict(), "released": self.released} if self.engine is not None else {}
        return {"args": {"config": self.config.to_dict(), "log_lambdas": self.log_lambdas}, "attributes": attributes}

    # ---- events ---------------------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        """Attach the engine for this run (fractions resolved), guard the optimizer, restore a resumed state."""
        if self.engine is not None:
            self.engine.detach()
        run_config = self.config.for_run(state.max_steps)  # fractions of max_steps become steps
        if run_config.warmup_steps >= state.max_steps:
            logger.warning(
                "MAT will not gate in this run: warm-up %d >= max_steps %d; lower --mat_warmup_steps or use a fraction",
                run_config.warmup_steps,
                state.max_steps,
            )
        self.engine = MATEngine(model, run_config).attach()
        if optimizer is not None:
            self.engine.guard_optimizer(optimizer)
        saved = (state.stateful_callbacks or {}).get(type(self).__name__)
        if state.global_step > 0 and not (isinstance(saved, dict) and saved.get("attributes")):
            raise MATConfigError(
                f"the checkpoint at step {state.global_step} holds no MAT state (trainer_state.json has no "
                "stateful_callbacks.MATCallback); resume MAT from a checkpoint saved by a run with mat=True"
            )
        if state.global_step > 0:
            try:
                self.engine.load_state_dict(saved["attributes"])
            except (KeyError, TypeError, ValueError, RuntimeError) as err:
                raise MATConfigError(
                    f"the MAT state in the checkpoint at step {state.global_step} does not fit this model or is "
                    f"damaged ({type(err).__name__}: {err}); resume from a checkpoint of the same run"
                ) from None
            if saved["attributes"].get("released"):
                self.release()
            logger.info(
                "MAT: resumed at step %d with %d active modules", state.global_step, int(self.engine.active.sum())
            )
        self._started, self._measured_before = time.perf_counter(), self.engine.measure_seconds  # share: this session
        self._histograms = HistogramSink.for_args(args) if state.is_world_process_zero else HistogramSink([])
        self._capture = model.register_forward_pre_hook(self._remember, with_kwargs=True)
        listen_whole_gradients(model, self, self._release_once)  # TWA's phase, whatever the Trainer

    def _release_once(self) -> None:
        if not self.released:
            self.release()

    def _remember(self, module, args, kwargs):
        if module.training and self.engine is not None and not self.engine.is_probing:
            self._batch = kwargs

    def on_step_end(self, args, state, control, **kwargs):
        """Let the engine measure and re-gate when due, on the batch captured for the probe."""
        if self.engine is None or self.released:
            return
        if self.engine.after_step(state.global_step, self._batch):
            self._pending = self._figures()
            if self._histograms is not None:
                self._histograms.write("mat/lambda", self.engine.last_lambda, state.global_step)
        self._batch = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        """Add MAT's figures (active share, saved FLOPs, λmax when measured) to the Trainer's log line."""
        if self.engine is None or logs is None or "loss" not in logs:
            return
        figures = self._pending or self._figures(with_lambdas=False)
        self._pending = {}
        logs.update(figures)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(figures)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        """Write ``mat_history.json`` and the heat map (main process), then detach the engine."""
        if model is not None:
            stop_listening(model, self)
        if self.engine is None:
            return
        if state.is_world_process_zero and self.engine.history:
            names = [u.name for u in self.engine.layout.units]
            write_json(
                os.path.join(args.output_dir, "mat_history.json"),
                {"config": self.engine.config.to_dict(), "units": names, **self.engine.state_dict()},
            )
            plot_heatmap(self.engine.history, names, os.path.join(args.output_dir, "mat_heatmap.png"))
        self.engine.detach()
        if self._histograms is not None:
            self._histograms.close()
        if self._capture is not None:
            self._capture.remove()
            self._capture = None

    # ---- figures --------------------------------------------------------------------------------------------
    def _figures(self, with_lambdas: bool = True) -> dict[str, float]:
        engine = self.engine
        elapsed = time.perf_counter() - self._started
        figures = {
            "mat/active_fraction": float(engine.active.float().mean()),
            "mat/projection_backward_flops_saved": engine.counter.saved_fraction,
            "mat/measure_seconds": engine.measure_seconds,
            "mat/measure_share": (engine.measure_seconds - self._measured_before) / elapsed if elapsed > 0 else 0.0,
            "mat/probe_interval": float(engine.interval),
            "mat/stop_layer": float(engine.stop_layer),
        }
        if with_lambdas and engine.last_lambda is not None:
            figures.update(lambda_summary(engine.last_lambda, engine.active, engine.layout))
        if with_lambdas and self.log_lambdas and engine.last_lambda is not None:
            for unit, value in zip(engine.layout.units, engine.last_lambda.tolist(), strict=True):
                figures[f"mat/lambda/{unit.name}"] = value
        return figures
