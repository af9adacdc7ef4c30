"""Exceptions for user errors.

Everything a user can cause (a bad path, a corrupt checkpoint, an unknown model family, a missing data
package) raises a subclass of :class:`HfEfftrainError`. The CLI turns these into one line on stderr and
exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class HfEfftrainError(Exception):
    """Base class of all user-facing errors raised by hf_efftrain."""


class ArgumentsError(HfEfftrainError, ValueError):
    """A training or script argument has an invalid value; the message names the flag."""


class UnknownArchitectureError(HfEfftrainError, KeyError):
    """The model family is not in the architecture registry."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class CheckpointError(HfEfftrainError):
    """A checkpoint is missing, unreadable or does not match the others."""


class MissingCheckpointError(CheckpointError, FileNotFoundError):
    """A checkpoint folder or its weights file does not exist."""


class CorruptCheckpointError(CheckpointError):
    """A weights file exists but cannot be parsed."""


class NonFiniteWeightsError(CheckpointError, ValueError):
    """A weights file holds NaN or Inf values (a diverged run); the message names the tensor and the file."""


class TrajectoryMismatchError(CheckpointError):
    """Checkpoints of one trajectory disagree on tensor names, shapes or dtypes."""


class MissingAssetError(HfEfftrainError, ImportError):
    """An offline data or weights package is not installed; the message names the pip line."""


class MATConfigError(HfEfftrainError, ValueError):
    """A MAT knob has an invalid value, or MAT cannot run in the requested setting (e.g. on a LoRA model)."""


class PermutationSpecError(HfEfftrainError):
    """A permutation spec does not fit the model, or a model has parameters no spec rule covers."""


class TransferError(HfEfftrainError, ValueError):
    """A trajectory transfer was asked for something it cannot do (bad method, spacing, step count...)."""


class TransferMismatchError(TransferError):
    """A source trajectory and a target initialization do not have the same architecture or shapes."""


class TWAError(HfEfftrainError):
    """Trainable weight averaging was configured or fed in a way that cannot work."""


class BasisMemoryError(TWAError, MemoryError):
    """The TWA basis would not fit in the memory available; the message gives the amount it needs."""


class CMDFitError(HfEfftrainError):
    """CMD cannot be fitted to this trajectory (too few checkpoints or moving parameters) or its result is unusable."""


class CMDNotReadyError(CMDFitError):
    """Online CMD weights were asked for before the warm-up snapshots were collected and the modes frozen."""


class ReportError(HfEfftrainError):
    """A run folder cannot be reported on: it is missing, holds nothing a report shows, or a file in it is corrupt."""
