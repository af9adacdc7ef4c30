"""hf_efftrain: cheaper training and fine-tuning for 🤗 Transformers."""

__version__ = "0.1.0"

from hf_efftrain._lazy import lazy_exports

# Imported on first use (hf_efftrain._lazy): importing the package stays cheap.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "hf_efftrain.architectures": (
            "ArchitectureSpec",
            "Projection",
            "get_architecture",
            "register_architecture",
        ),
        "hf_efftrain.errors": ("HfEfftrainError",),
        "hf_efftrain.trainer": (
            "EfficientTrainer",
            "EfficientTrainingArguments",
        ),
        "hf_efftrain.trajectory": (
            "SnapshotCallback",
            "Trajectory",
        ),
    },
)

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
