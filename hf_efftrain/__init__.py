"""hf_efftrain: cheaper training and fine-tuning for 🤗 Transformers."""

__version__ = "0.1.0"
