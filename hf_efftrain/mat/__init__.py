"""MAT — modular adaptive training (Shi et al., NeurIPS 2023): train only the attention heads (optionally FFN
blocks) whose modular NTK has a large principal eigenvalue, and skip the backward work of the others.

* :func:`estimate_lambda_max` — exact λmax of every module's NTK from one probe forward/backward;
* :class:`MATEngine` — gates, patched projections, optimizer guard; drive it from any loop;
* :class:`MATCallback` — schedules the engine inside any ``transformers.Trainer``;
* ``EfficientTrainingArguments(mat=True, ...)`` — the same through :class:`EfficientTrainer`.

Example::

    trainer = EfficientTrainer(model=model, args=EfficientTrainingArguments("out", mat=True, mat_every=10), ...)
"""

from hf_efftrain._lazy import lazy_exports

# Imported on first use (hf_efftrain._lazy): importing the package stays cheap.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "hf_efftrain.mat.callback": ("MATCallback",),
        "hf_efftrain.mat.config": ("MATConfig",),
        "hf_efftrain.mat.engine": ("MATEngine",),
        "hf_efftrain.mat.layout": (
            "Layout",
            "Unit",
            "build_layout",
        ),
        "hf_efftrain.mat.ntk": (
            "estimate_lambda_max",
            "unit_kernels",
        ),
    },
)

__all__ = [
    "Layout",
    "MATCallback",
    "MATConfig",
    "MATEngine",
    "Unit",
    "build_layout",
    "estimate_lambda_max",
    "unit_kernels",
]
