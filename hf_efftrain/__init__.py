"""hf_efftrain: cheaper training and fine-tuning for 🤗 Transformers."""

__version__ = "0.1.0"

from hf_efftrain.architectures import ArchitectureSpec, Projection, get_architecture, register_architecture
from hf_efftrain.errors import HfEfftrainError
from hf_efftrain.trainer import EfficientTrainer, EfficientTrainingArguments
from hf_efftrain.trajectory import SnapshotCallback, Trajectory

__all__ = [
    "ArchitectureSpec",
    "EfficientTrainer",
    "EfficientTrainingArguments",
    "HfEfftrainError",
    "Projection",
    "SnapshotCallback",
    "Trajectory",
    "get_architecture",
    "register_architecture",
]
