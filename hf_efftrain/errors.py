"""Exceptions for user errors.

Everything a user can cause (a bad path, a corrupt checkpoint, an unknown model family, a missing data
package) raises a subclass of :class:`HfEfftrainError`, which is also a ``ValueError`` (code that catches
``ValueError`` around a Trainer keeps working). The CLI turns these into one line on stderr and exit code 2;
anything else is a bug and keeps its traceback.

Errors that are also a built-in kind (``FileNotFoundError``, ``ImportError``, ``MemoryError``, ``KeyError``) list
that built-in *first*: its constructor then comes first in the MRO, so ``errno``/``filename``/``name`` keep working
(with ``ValueError`` first, ``MissingCheckpointError(2, "msg", "path").errno`` would be ``None``).
"""

from __future__ import annotations


class HfEfftrainError(ValueError):
    """Base class of all user-facing errors raised by hf_efftrain."""


class ArgumentsError(HfEfftrainError):
    """A training or script argument has an invalid value; the message names the flag."""


class UnknownArchitectureError(KeyError, HfEfftrainError):
    """The model family is not in the architecture registry."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class OutputError(HfEfftrainError, ValueError):
    """An output location cannot be written without losing data: it holds other files, or is an input."""


class CheckpointError(HfEfftrainError):
    """A checkpoint is missing, unreadable or does not match the others."""


class MissingCheckpointError(FileNotFoundError, CheckpointError):
    """A checkpoint folder or its weights file does not exist."""


class CorruptCheckpointError(CheckpointError):
    """A weights file exists but cannot be parsed."""


class NonFiniteWeightsError(CheckpointError, ValueError):
    """A weights file holds NaN or Inf values (a diverged run); the message names the tensor and the file."""


class TrajectoryMismatchError(CheckpointError):
    """Checkpoints of one trajectory disagree on tensor names, shapes or dtypes."""


class MissingAssetError(ImportError, HfEfftrainError):
    """An offline data or weights package is not installed; the message names the pip line."""


class MATConfigError(ArgumentsError):
    """A MAT knob has an invalid value, or MAT cannot run in the requested setting (e.g. on a LoRA model)."""


class PermutationSpecError(HfEfftrainError):
    """A permutation spec does not fit the model, or a model has parameters no spec rule covers."""


class TransferError(HfEfftrainError):
    """A trajectory transfer was asked for something it cannot do (bad method, spacing, step count...)."""


class TransferMismatchError(TransferError):
    """A source trajectory and a target initialization do not have the same architecture or shapes."""


class TWAError(HfEfftrainError):
    """Trainable weight averaging was configured or fed in a way that cannot work."""


class TWAConfigError(TWAError, ArgumentsError):
    """A TWA knob has an invalid value, or the TWA phase cannot fit the run; the message names the flag."""


class BasisMemoryError(MemoryError, TWAError):
    """The TWA basis would not fit in the memory available; the message gives the amount it needs."""


class CMDError(HfEfftrainError):
    """Correlation mode decomposition was configured or fed in a way that cannot work."""


class CMDConfigError(CMDError, ArgumentsError):
    """A CMD knob (``cmd_*``) has an invalid value or does not combine with the run; the message names the flag."""


class CMDFitError(CMDError):
    """CMD cannot be fitted to this trajectory (too few checkpoints or moving parameters) or its result is unusable."""


class CMDNotReadyError(CMDFitError):
    """Online CMD weights were asked for before the warm-up snapshots were collected and the modes frozen."""


class GrowthError(HfEfftrainError):
    """A growth recipe or operator call is invalid (bad layer range, mismatched widths, vocab mismatch...)."""


class GrowthConfigError(GrowthError, ArgumentsError):
    """A growth training argument (``growth_*``) has an invalid value; the message names the flag."""


class ReportError(HfEfftrainError):
    """A run folder cannot be reported on: it is missing, holds nothing a report shows, or a file in it is corrupt."""


class DocsGenerationError(HfEfftrainError):
    """A docs marker cannot be expanded (missing or corrupt benchmark result, unknown class...)."""


class MissingExtraError(MissingAssetError):
    """An optional dependency (plots, data...) is not installed; the message names the extra to install."""
