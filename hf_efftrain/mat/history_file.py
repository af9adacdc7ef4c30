"""Reading ``mat_history.json`` for ``hf-efftrain mat summary|heatmap``, checked whole before anything is drawn.

A hand-edited, truncated or foreign file must end in one line naming the file and the field, not a
``KeyError`` halfway through a table. Example::

    data = read_history("outputs/finetune")     # dict with units, history, measurements, ...
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hf_efftrain.errors import CorruptCheckpointError, MissingCheckpointError

HISTORY_FILE = "mat_history.json"


class _Measurement(BaseModel):
    model_config = ConfigDict(strict=True)

    step: int
    lambda_: list[float] = Field(alias="lambda")
    active: list[bool]


class MatMeasurements(BaseModel):
    """Units and measurements, one value per unit in each: what a report needs (it reads the rest if present)."""

    model_config = ConfigDict(strict=True, extra="allow")

    units: list[str] = Field(min_length=1)
    history: list[_Measurement] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_value_per_unit(self) -> MatMeasurements:
        for index, entry in enumerate(self.history):
            if len(entry.lambda_) != len(self.units) or len(entry.active) != len(self.units):
                raise ValueError(f"history[{index}] has {len(entry.lambda_)} values for {len(self.units)} units")
        return self


class MatHistory(MatMeasurements):
    """All that ``mat summary`` prints: the measurements plus their count, time and FLOPs."""

    measurements: int
    measure_seconds: float
    flops_full: float
    flops_done: float


def _first_error(err: ValidationError) -> str:
    first = err.errors()[0]
    where = "".join(f"{part}: " for part in [".".join(str(p) for p in first["loc"])] if part)
    return f"{where}{first['msg'].removeprefix('Value error, ')} ({err.error_count()} problem(s) in all)"


def read_history(run_dir: Path) -> dict[str, Any]:
    """The parsed and checked ``RUN_DIR/mat_history.json``."""
    path = Path(run_dir) / HISTORY_FILE
    if not path.is_file():
        raise MissingCheckpointError(f"{path} not found: pass the output_dir of a finished run trained with --mat")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptCheckpointError(f"{path}: not valid JSON ({err})") from None
    return check_history(data, path)


def check_history(data: Any, path: Path, complete: bool = True) -> dict[str, Any]:
    """``data`` if it has the layout of a MAT history (read from ``path``), else one error naming the file.

    ``complete=False`` asks only for units and measurements (a report shows what else is there).
    """
    try:
        (MatHistory if complete else MatMeasurements).model_validate(data)
    except ValidationError as err:
        raise CorruptCheckpointError(f"{path}: not a MAT history file: {_first_error(err)}") from None
    return data
