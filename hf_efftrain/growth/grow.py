"""Executing a recipe: load the sources, apply the steps, save model + tokenizer + recipe atomically.

Example::

    model = apply_recipe(GrowthRecipe.load("grow.yaml"))
    grow_from_recipe("grow.yaml", "out/grown")    # config, weights, tokenizer, growth_recipe.yaml
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoConfig, PreTrainedModel, set_seed

from hf_efftrain.growth.depth import grow_depth
from hf_efftrain.growth.fusion import fuse_width
from hf_efftrain.growth.masked import masked_depth, masked_width
from hf_efftrain.growth.pooler import attach_pooler
from hf_efftrain.growth.provenance import save_recipe
from hf_efftrain.growth.recipe import GrowthRecipe, depth_plan, validate_recipe
from hf_efftrain.growth.width import grow_width
from hf_efftrain.model_folder import load_model
from hf_efftrain.outputs import check_output, output_directory

AUTO_CLASSES = {
    "masked-lm": "AutoModelForMaskedLM",
    "causal-lm": "AutoModelForCausalLM",
    "classification": "AutoModelForSequenceClassification",
    "base": "AutoModel",
}


def infer_task(path: str) -> str:
    """The task of a checkpoint from its ``architectures`` field (``...ForMaskedLM`` -> ``masked-lm``)."""
    names = AutoConfig.from_pretrained(path).architectures or []
    for suffix, task in (("ForMaskedLM", "masked-lm"), ("ForCausalLM", "causal-lm"), ("LMHeadModel", "causal-lm")):
        if any(n.endswith(suffix) for n in names):
            return task
    if any(n.endswith("ForSequenceClassification") for n in names):
        return "classification"
    return "base"


def load_sources(recipe: GrowthRecipe) -> list[PreTrainedModel]:
    """Every source with the recipe's task head; missing head weights are initialized from ``recipe.seed``, and a
    pooler the task class drops is kept (:func:`~hf_efftrain.growth.pooler.attach_pooler`)."""
    import transformers

    task = recipe.task or infer_task(recipe.sources[0])
    auto = getattr(transformers, AUTO_CLASSES[task])
    models = []
    for path in recipe.sources:
        set_seed(recipe.seed)
        model = load_model(path, auto, what="source")
        attach_pooler(model, path)  # e.g. MiniLM's pooler, which BertForMaskedLM would drop
        models.append(model)
    return models


def _apply_step(models: list[PreTrainedModel], op: str, params: dict, seed: int) -> PreTrainedModel:
    spec_depth = models[0].config
    from hf_efftrain.architectures import get_architecture

    depth = get_architecture(spec_depth).num_layers(spec_depth)
    if op == "fusion":
        return fuse_width(models[0], models[1], seed=seed)
    if op == "depth":
        return grow_depth(models, depth_plan(params, depth), seed=seed)
    if op == "masked_depth":
        ramp = int(params.get("ramp_steps", 100))
        plan = depth_plan(params, depth)
        return masked_depth(models[0], plan, fresh=bool(params.get("fresh", False)), ramp_steps=ramp, seed=seed)
    sizes = {k: params.get(k) for k in ("intermediate_size", "num_heads", "num_kv_heads")}
    if op == "masked_width":
        return masked_width(models[0], **sizes, ramp_steps=int(params.get("ramp_steps", 100)), seed=seed)
    return grow_width(models[0], params.get("hidden_size"), **sizes, noise=float(params.get("noise", 0.0)), seed=seed)


def apply_recipe(recipe: GrowthRecipe, sources: list[PreTrainedModel] | None = None) -> PreTrainedModel:
    """Validate, load the sources (unless given) and apply every step; returns the grown model."""
    validate_recipe(recipe)
    models = sources if sources is not None else load_sources(recipe)
    for step in recipe.steps:
        ((op, params),) = step.items()
        models = [_apply_step(models, op, params or {}, recipe.seed)]
    return models[0]


def grow_from_recipe(
    recipe: GrowthRecipe | str | Path,
    output_dir: str | Path,
    overwrite: bool = False,
    card: bool = False,
    lag_result=None,
) -> Path:
    """Grow and save the model, the first source's tokenizer, the recipe (and the LAG report and the card) into
    ``output_dir``.

    The saved recipe names its sources by Hub id (packaged assets) or relative to ``output_dir``
    (:func:`~hf_efftrain.growth.provenance.portable_recipe`): no absolute path, and it still grows the same model.
    The folder is written whole or not at all. It may not be one of the sources (the recipe would then point at
    itself), and an earlier grown model there is replaced only with ``overwrite``
    (:func:`hf_efftrain.outputs.check_output`).
    """
    recipe_path = None
    if not isinstance(recipe, GrowthRecipe):
        recipe_path, recipe = recipe, GrowthRecipe.load(recipe)
    out = check_output(output_dir, "grow", inputs=[*recipe.sources, recipe_path], overwrite=overwrite)
    model = apply_recipe(recipe)
    with output_directory(out, "grow") as tmp:
        model.save_pretrained(tmp)
        save_tokenizer(recipe.sources[0], tmp)
        save_recipe(recipe, tmp, relative_to=out)
        if lag_result is not None:
            from hf_efftrain.growth.hub import LAG_DIR

            lag_result.save(tmp / LAG_DIR)  # uploaded with the model; the card reads its table from there
        if card:
            from hf_efftrain.growth.hub import write_model_card

            write_model_card(tmp)
    return out


def save_tokenizer(source: str, folder: Path) -> bool:
    """Copy the source's tokenizer next to the grown model; ``False`` when the source has none."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError, TypeError):
        return False
    tokenizer.save_pretrained(folder)
    return True
