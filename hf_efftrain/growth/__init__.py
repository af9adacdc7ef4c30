"""Model growth: deeper/wider models from trained checkpoints, chosen by LAG (loss after a short lag).

* :mod:`.depth`  — stacking strategies as layer plans, depth fusion across equal-width checkpoints;
* :mod:`.width`  — function-preserving Net2Net/bert2BERT width growth (hidden, MLP, heads);
* :mod:`.upscale` — SOLAR depth up-scaling of a decoder (two overlapping copies of the stack);
* :mod:`.fusion` — Deep-Fusion of two same-shape checkpoints (output = average, up to the norms);
* :mod:`.masked` — masked structural growth (MSG), exact whatever the new weights;
* :mod:`.recipe` — YAML/JSON recipes, validated up front, saved next to the grown model;
* :mod:`.lag`    — LAG selection between candidates, :mod:`.lag_report` its result (table, JSON, plot);
* :mod:`.stacking` — adaptive gradual stacking;
* :mod:`.hub`    — model card and Hub upload of a grown model.

Example::

    deeper = grow_depth([model], copy_all(6, 12))
"""

from hf_efftrain._lazy import lazy_exports

# Imported on first use (hf_efftrain._lazy): importing the package stays cheap.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "hf_efftrain.growth.arguments": ("GrowthArguments",),
        "hf_efftrain.growth.callback": ("MaskRampCallback",),
        "hf_efftrain.growth.config": ("GrowthConfig",),
        "hf_efftrain.growth.depth": (
            "copy_all",
            "grow_depth",
            "interleave",
            "middle",
            "overlap",
            "slices",
            "top_k",
        ),
        "hf_efftrain.errors": ("GrowthError",),
        "hf_efftrain.growth.fusion": (
            "fuse_width",
            "fusion_gap",
        ),
        "hf_efftrain.growth.grow": (
            "apply_recipe",
            "grow_from_recipe",
        ),
        "hf_efftrain.growth.hub": (
            "push_grown_model",
            "write_model_card",
        ),
        "hf_efftrain.growth.lag": ("select_growth",),
        "hf_efftrain.growth.lag_report": ("LagResult",),
        "hf_efftrain.growth.masked": (
            "masked_depth",
            "masked_width",
        ),
        "hf_efftrain.growth.mask_state": (
            "get_mask",
            "remove_mask",
            "restore_mask",
            "set_mask",
        ),
        "hf_efftrain.growth.recipe": (
            "GrowthRecipe",
            "validate_recipe",
        ),
        "hf_efftrain.growth.stacking": (
            "PlateauStopCallback",
            "StackingConfig",
            "gradual_stack",
        ),
        "hf_efftrain.growth.upscale": ("upscale_depth",),
        "hf_efftrain.growth.width": ("grow_width",),
    },
)

__all__ = [
    "GrowthArguments",
    "GrowthConfig",
    "GrowthError",
    "GrowthRecipe",
    "LagResult",
    "MaskRampCallback",
    "PlateauStopCallback",
    "StackingConfig",
    "apply_recipe",
    "gradual_stack",
    "grow_from_recipe",
    "push_grown_model",
    "select_growth",
    "validate_recipe",
    "write_model_card",
    "copy_all",
    "fuse_width",
    "fusion_gap",
    "get_mask",
    "grow_depth",
    "grow_width",
    "interleave",
    "masked_depth",
    "masked_width",
    "middle",
    "overlap",
    "remove_mask",
    "restore_mask",
    "set_mask",
    "slices",
    "top_k",
    "upscale_depth",
]
