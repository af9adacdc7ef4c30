"""The outcome of a CMD fit: M reference trajectories, (a, b, mode) per parameter, and fit statistics.

Storage is 2N coefficients + M×T references + one byte per parameter, instead of N×T. Saved as
``cmd.safetensors`` (tensors) + ``cmd.json`` (steps, reference names, statistics), loadable later. Both carry
the same ``result_id``: a pair from two different fits (a write killed between the two files) is refused on
load instead of mixing new tensors with old metadata. Example::

    result = CMDResult.load("runs/cmd")
    weights = result.reconstruct(step=120)       # {name: tensor} = a·r(120) + b, any step in the fitted range
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hf_efftrain.atomic import write_json, write_safetensors
from hf_efftrain.cmd.fit import reference_at
from hf_efftrain.cmd.paired_files import new_stamp, read_paired
from hf_efftrain.errors import CMDFitError

RESULT_FORMAT = "hf_efftrain.cmd.v1"
TENSORS_FILE = "cmd.safetensors"
META_FILE = "cmd.json"
SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


@dataclass
class CMDResult:
    """Modes and per-parameter coefficients; ``references[m, t]`` is mode m's reference at ``steps[t]``."""

    steps: list[int]
    references: np.ndarray  # [M, T] float64
    reference_ids: list[tuple[str, int]]  # (tensor name, flat index) of each mode's reference parameter
    a: dict[str, torch.Tensor]
    b: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor]  # uint8, same shape as the parameter
    dtypes: dict[str, str]
    candidate_correlation: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    candidate_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    stats: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_modes(self) -> int:
        """The number of modes M, one row of ``references`` each."""
        return self.references.shape[0]

    @property
    def names(self) -> list[str]:
        """The tensors the decomposition covers, in the order their coefficients are stored."""
        return list(self.a)

    # ---- reconstruction -----------------------------------------------------------------------------------
    def reconstruct(self, step: float) -> dict[str, torch.Tensor]:
        """θ̂(step) = a·r(step) + b for every parameter, in each parameter's original dtype."""
        ref = torch.from_numpy(reference_at(self.references, self.steps, step))
        return {name: self._tensor(name, ref) for name in self.a}

    def _tensor(self, name: str, ref: torch.Tensor) -> torch.Tensor:
        r = ref[self.labels[name].long()]
        value = self.a[name].double() * r + self.b[name].double()
        return value.to(SAFETENSORS_DTYPES.get(self.dtypes[name], torch.float32))

    # ---- summary ------------------------------------------------------------------------------------------
    def summary_rows(self) -> list[dict[str, Any]]:
        """One row per mode: size, share of parameters, reference parameter, reconstruction error inside it."""
        rows = []
        per_mode = self.stats.get("per_mode", [])
        total = sum(m["parameters"] for m in per_mode) or 1
        for mode, info in enumerate(per_mode):
            name, index = self.reference_ids[mode]
            rows.append(
                {
                    "mode": mode,
                    "parameters": info["parameters"],
                    "share": info["parameters"] / total,
                    "moving_share": info["moving"] / max(1, info["parameters"]),
                    "mean_abs_corr": info["mean_abs_corr"],
                    "relative_displacement_error": info["relative_displacement_error"],
                    "reference": f"{name}[{index}]",
                }
            )
        return rows

    def summary_markdown(self) -> str:
        """The per-mode table and the overall errors, as Markdown (written to ``summary.md`` by the CLI)."""
        rows = self.summary_rows()
        cell = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
        lines = [f"# CMD summary ({self.num_modes} modes, {len(self.steps)} checkpoints)", ""]
        lines.append(f"- parameters: {self.stats.get('num_parameters')} ({self.stats.get('moving_parameters')} moving)")
        for key in ("relative_reconstruction_error", "relative_displacement_error"):
            lines.append(f"- {key}: {cell(self.stats.get(key))}")
        if rows:
            lines += ["", "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
            lines += ["| " + " | ".join(cell(v) for v in row.values()) + " |" for row in rows]
        return "\n".join(lines) + "\n"

    # ---- persistence --------------------------------------------------------------------------------------
    def modes_record(self) -> dict[str, Any]:
        """The small part of the result (steps, references, statistics; no per-parameter tensors), as JSON data.

        Online CMD writes it as ``cmd_modes.json`` when it freezes its modes, so reports can plot them.
        """
        return {
            "format": RESULT_FORMAT,
            "steps": self.steps,
            "reference_ids": [list(r) for r in self.reference_ids],
            "references": self.references.tolist(),
            "stats": self.stats,
        }

    @classmethod
    def from_modes_record(cls, record: dict[str, Any]) -> CMDResult:
        """A result holding only what :meth:`modes_record` kept (enough for the mode, membership and error plots)."""
        return cls(
            steps=list(record["steps"]),
            references=np.asarray(record["references"], dtype=np.float64).reshape(len(record["reference_ids"]), -1),
            reference_ids=[(n, int(i)) for n, i in record["reference_ids"]],
            a={},
            b={},
            labels={},
            dtypes={},
            stats=record["stats"],
        )

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``cmd.safetensors`` and ``cmd.json`` into ``folder`` (each atomically)."""
        folder = Path(folder)
        tensors = {"references": torch.from_numpy(self.references.copy())}
        tensors["candidate_correlation"] = torch.from_numpy(self.candidate_correlation.astype(np.float32))
        tensors["candidate_labels"] = torch.from_numpy(self.candidate_labels.astype(np.int64))
        for name in self.a:
            tensors[f"a.{name}"] = self.a[name]
            tensors[f"b.{name}"] = self.b[name]
            tensors[f"label.{name}"] = self.labels[name]
        result_id = new_stamp()
        write_safetensors(folder / TENSORS_FILE, tensors, {"format": RESULT_FORMAT, "result_id": result_id})
        meta = {
            "format": RESULT_FORMAT,
            "result_id": result_id,
            "steps": self.steps,
            "names": self.names,
            "dtypes": self.dtypes,
            "reference_ids": [list(r) for r in self.reference_ids],
            "meta": self.meta,
            "stats": self.stats,
        }
        write_json(folder / META_FILE, meta)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> CMDResult:
        """Read a result written by :meth:`save`."""
        folder = Path(folder)
        meta_path, tensor_path = folder / META_FILE, folder / TENSORS_FILE
        if not meta_path.is_file() or not tensor_path.is_file():
            raise CMDFitError(f"{folder} holds no CMD result ({META_FILE} + {TENSORS_FILE}); run `hf-efftrain cmd fit`")
        try:
            meta, tensors, header = read_paired(meta_path, tensor_path)
        except ValueError as err:
            raise CMDFitError(f"{folder}: unreadable CMD result ({err}); fit it again") from None
        if not isinstance(meta, dict) or meta.get("format") != RESULT_FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise CMDFitError(f"{meta_path}: format {found!r}, expected {RESULT_FORMAT!r}")
        if meta.get("result_id") != header.get("result_id"):
            raise CMDFitError(
                f"{folder}: {META_FILE} and {TENSORS_FILE} come from different fits (an interrupted write?); "
                "fit it again with `hf-efftrain cmd fit`"
            )
        try:
            return cls._from_files(meta, tensors)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise CMDFitError(f"{folder}: incomplete or malformed CMD result ({err!r}); fit it again") from None

    @classmethod
    def _from_files(cls, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> CMDResult:
        names = meta["names"]
        return cls(
            steps=meta["steps"],
            references=tensors["references"].numpy(),
            reference_ids=[(n, int(i)) for n, i in meta["reference_ids"]],
            a={n: tensors[f"a.{n}"] for n in names},
            b={n: tensors[f"b.{n}"] for n in names},
            labels={n: tensors[f"label.{n}"] for n in names},
            dtypes=meta["dtypes"],
            candidate_correlation=tensors["candidate_correlation"].double().numpy(),
            candidate_labels=tensors["candidate_labels"].numpy(),
            stats=meta["stats"],
            meta=meta["meta"],
        )
