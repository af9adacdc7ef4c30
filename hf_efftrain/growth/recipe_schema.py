"""The types of a growth recipe, checked with pydantic before anything else so every mistake is reported at once.

A recipe typo should cost one run, not one run per field: :func:`schema_errors` returns every field error with
its path (``steps[0].depth.target_layers: expected an integer, got 4.7``). Numbers are strict, so ``4.7`` or
``"four"`` where a count belongs is an error instead of being truncated. What needs the sources' configs (layer
ranges, widths) is checked later by :func:`~hf_efftrain.growth.recipe.validate_recipe`. Example::

    schema_errors({"sources": 5, "steps": [], "seed": "abc"})   # ['sources: expected a list, got 5', ...]
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

TOP_KEYS = ("sources", "steps", "task", "seed", "name", "notes")
Triple = Annotated[list[int], Field(min_length=3, max_length=3)]  # [source, start, stop]
Count = Annotated[int, Field(ge=1)]  # layers, heads, sizes: 0 would silently mean "the default"


class _Params(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class DepthParams(_Params):
    """Fields of a ``depth`` step: a stacking strategy and its sizes, or explicit ``slices``."""

    strategy: str | None = None
    target_layers: Count | None = None
    k: Count | None = None
    block: Count | None = None
    m: Annotated[int, Field(ge=0)] | None = None
    copies: Count | None = None
    slices: Annotated[list[Triple], Field(min_length=1)] | None = None


class MaskedDepthParams(DepthParams):
    """Fields of a ``masked_depth`` step: a depth plan, whether new layers start fresh, the mask ramp."""

    fresh: bool = False
    ramp_steps: Count = 100


class WidthParams(_Params):
    """Fields of a ``width`` step (Net2Net): the new sizes, and the noise that breaks the copies' symmetry."""

    hidden_size: Count | None = None
    intermediate_size: Count | None = None
    num_heads: Count | None = None
    num_kv_heads: Count | None = None
    noise: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0


class MaskedWidthParams(_Params):
    """Fields of a ``masked_width`` step: the new MLP and head counts, and the mask ramp."""

    intermediate_size: Count | None = None
    num_heads: Count | None = None
    num_kv_heads: Count | None = None
    ramp_steps: Count = 100


class FusionParams(_Params):
    """A ``fusion`` step takes no fields: it fuses the recipe's two sources."""


STEP_PARAMS: dict[str, type[_Params]] = {
    "depth": DepthParams,
    "masked_depth": MaskedDepthParams,
    "width": WidthParams,
    "masked_width": MaskedWidthParams,
    "fusion": FusionParams,
}


class Notes(BaseModel):
    """Free-form notes; ``base_models`` (Hub ids of the sources) goes into the model card's metadata."""

    model_config = ConfigDict(strict=True, extra="allow")

    base_models: list[str] | None = None


class RecipeFields(BaseModel):
    """The top level of a recipe; ``steps`` are checked one by one with :data:`STEP_PARAMS`."""

    model_config = ConfigDict(strict=True)

    sources: list[str] = Field(min_length=1)
    steps: list[Any] = Field(min_length=1)
    task: str | None = None
    seed: int = 0
    name: str | None = None
    notes: Notes | None = None


def _describe(error: dict) -> str:
    kind = error["type"]
    expected = {
        "int": "expected an integer",
        "float": "expected a number",
        "string": "expected a string",
        "bool": "expected true or false",
        "list": "expected a list",
        "dict": "expected a mapping",
        "model": "expected a mapping",
    }
    if kind == "missing":
        return "required"
    if kind == "greater_than_equal":
        return f"must be at least {error['ctx']['ge']}, got {error['input']!r}"
    if kind == "finite_number":
        return f"must be a finite number, got {error['input']!r}"
    if kind == "too_short" and not error["input"]:
        return "must not be empty"
    if kind in ("too_short", "too_long") and isinstance(error["input"], list | tuple):
        return f"expected [source, start, stop], got {list(error['input'])!r}"
    message = next((text for key, text in expected.items() if kind.startswith(key)), error["msg"])
    return f"{message}, got {error['input']!r}"


def _path(location: tuple) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".")


def _pydantic_errors(model: type[BaseModel], data: dict, prefix: tuple = ()) -> list[str]:
    try:
        model.model_validate(data)
    except ValidationError as err:
        return [f"{_path(prefix + tuple(e['loc']))}: {_describe(e)}" for e in err.errors()]
    return []


def _step_errors(index: int, step: Any) -> list[str]:
    where = f"steps[{index}]"
    if not isinstance(step, dict) or len(step) != 1:
        return [f"{where}: expected a mapping with one key out of {sorted(STEP_PARAMS)}, got {step!r}"]
    ((op, params),) = step.items()
    if op not in STEP_PARAMS:
        return [f"{where}: unknown step {op!r}; choose one of {sorted(STEP_PARAMS)}"]
    params = {} if params is None else params
    if not isinstance(params, dict):
        return [f"{where}.{op}: expected a mapping of parameters, got {params!r}"]
    allowed = set(STEP_PARAMS[op].model_fields)
    errors = []
    if unknown := set(params) - allowed:
        errors.append(f"{where} ({op}): unknown parameter(s) {sorted(unknown)}; allowed {sorted(allowed)}")
    known = {k: v for k, v in params.items() if k in allowed}
    return errors + _pydantic_errors(STEP_PARAMS[op], known, (f"steps[{index}]", op))


def schema_errors(data: Any) -> list[str]:
    """Every type error of a recipe mapping, each as ``path: what is wrong``; empty when the types are right."""
    if not isinstance(data, dict):
        return ["a recipe must be a mapping with 'sources' and 'steps'"]
    errors = []
    if unknown := set(data) - set(TOP_KEYS):
        errors.append(f"unknown key(s) {sorted(unknown, key=str)}; allowed: {', '.join(TOP_KEYS)}")
    known = {k: v for k, v in data.items() if k in TOP_KEYS}
    if isinstance(known.get("sources"), str):
        known["sources"] = [known["sources"]]
    errors += _pydantic_errors(RecipeFields, known)
    if isinstance(known.get("steps"), list):
        for index, step in enumerate(known["steps"]):
            errors += _step_errors(index, step)
    return errors
