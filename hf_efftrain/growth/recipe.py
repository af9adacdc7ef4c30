"""Growth recipes: a YAML/JSON file that fully describes a growth, validated before any weight is loaded.

Like a mergekit config, a recipe is data: it names the source checkpoints and a list of steps, and it is
saved next to the grown model (``growth_recipe.yaml``) so the result can be reproduced and published.
Validation reads only the sources' configs and tokenizer files, so a bad layer range, mismatched widths or a
vocabulary/tokenizer mismatch fails in milliseconds with a message saying what to change. Example recipe::

    sources: [checkpoints/minilm]          # local folders (relative to this file) or a packaged asset's Hub id
    task: masked-lm                        # masked-lm | causal-lm | classification | base (default: inferred)
    seed: 0                                # initializes whatever the sources lack (e.g. a task head)
    notes: {base_models: [org/minilm]}     # optional: Hub ids of the sources for the model card
    steps:
      - depth: {strategy: copy_all, target_layers: 12}
      - width: {intermediate_size: 2048}

Step kinds: ``depth`` (strategies ``copy_all``, ``interleave``: ``target_layers``; ``top_k``: +``k``;
``middle``: +``block``; ``overlap``: ``m``, ``copies``; ``slices``: ``[[source, start, stop], ...]``),
``width`` (``hidden_size``, ``intermediate_size``, ``num_heads``, ``num_kv_heads``, ``noise``), ``fusion``
(two sources, no parameters), ``masked_depth`` (a depth step + ``fresh``, ``ramp_steps``) and ``masked_width``
(``intermediate_size``, ``num_heads``, ``num_kv_heads``, ``ramp_steps``). Only the first step may use several
sources; a masked step must be the last.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hf_efftrain.architectures import get_architecture
from hf_efftrain.errors import GrowthError, UnknownArchitectureError
from hf_efftrain.growth import depth as depth_ops
from hf_efftrain.growth.recipe_schema import STEP_PARAMS, schema_errors
from hf_efftrain.model_folder import read_config

RECIPE_FILE = "growth_recipe.yaml"
TASKS = ("masked-lm", "causal-lm", "classification", "base")
STEP_KEYS = {op: set(params.model_fields) for op, params in STEP_PARAMS.items()}
STRATEGIES = {
    "copy_all": ("target_layers",),
    "interleave": ("target_layers",),
    "top_k": ("target_layers", "k"),
    "middle": ("target_layers", "block"),
    "overlap": ("m", "copies"),
    "slices": ("slices",),
}
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "merges.txt", "tokenizer.model")


@dataclass
class GrowthRecipe:
    """Sources, task, seed and steps of one growth (see the module docstring for the format)."""

    sources: list[str]
    steps: list[dict[str, dict[str, Any]]]
    task: str | None = None
    seed: int = 0
    name: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str = "recipe") -> GrowthRecipe:
        """Check every field's type first (all errors in one message), then build the recipe."""
        if errors := schema_errors(data):
            raise GrowthError(f"{origin}: " + "; ".join(errors))
        sources = [data["sources"]] if isinstance(data["sources"], str) else list(data["sources"])
        recipe = cls(sources, data["steps"], data.get("task"), data.get("seed", 0), data.get("name"))
        recipe.notes = dict(data.get("notes") or {})
        return recipe

    @classmethod
    def load(cls, path: str | Path) -> GrowthRecipe:
        """Read a ``.yaml``/``.yml``/``.json`` recipe; relative source paths are relative to the recipe file, and
        the Hub id of a packaged asset (``sentence-transformers/all-MiniLM-L6-v2``) names its local folder."""
        path = Path(path)
        if not path.is_file():
            raise GrowthError(f"recipe file {path} {'is a folder' if path.is_dir() else 'does not exist'}")
        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as err:
            raise GrowthError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {err}") from err
        recipe = cls.from_dict(data, origin=str(path))
        recipe.sources = [_resolve_source(s, path.parent) for s in recipe.sources]
        return recipe

    def to_dict(self) -> dict[str, Any]:
        """The recipe as plain data, empty fields left out (what is saved next to the grown model)."""
        return {k: v for k, v in asdict(self).items() if v not in (None, {})}

    def to_yaml(self) -> str:
        """The recipe as YAML, keys in recipe order: a file ``hf-efftrain grow`` reads back."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @property
    def display_name(self) -> str:
        """``name`` if set, else the steps written out (``depth(strategy=top_k, k=2)``): a label for reports."""
        return self.name or " + ".join(f"{op}({_brief(params)})" for step in self.steps for op, params in step.items())


def _resolve_source(source: str, base: Path) -> str:
    """An absolute source folder: as given, relative to the recipe, or the packaged asset a Hub id names."""
    from hf_efftrain.data import asset_folder

    if Path(source).is_absolute():
        return source
    local = (base / source).resolve()
    packaged = None if local.exists() else asset_folder(source)
    return str(packaged or local)


def _brief(params: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in params.items() if k != "slices") or ""


def _tokenizer_fingerprint(folder: Path) -> str | None:
    digest = hashlib.sha256()
    found = False
    for name in TOKENIZER_FILES:
        if (folder / name).is_file():
            digest.update(name.encode() + (folder / name).read_bytes())
            found = True
    return digest.hexdigest() if found else None


def load_source_config(path: str):
    """The config of one source folder; a clear error if it is missing, unreadable or of an unknown family."""
    if not (Path(path) / "config.json").is_file():
        raise GrowthError(f"source {path} is not a model folder (no config.json); give a local checkpoint folder")
    from hf_efftrain.growth.mask_state import CONFIG_KEY

    config = read_config(path, what="source")
    if (record := getattr(config, CONFIG_KEY, None)) is not None:
        raise GrowthError(
            f"source {path} was saved during a masked-growth ramp ({CONFIG_KEY}: {record}): growing it "
            "would drop the mask; train it until the ramp ends (mask 1) and grow the checkpoint saved then"
        )
    try:
        get_architecture(config)
    except UnknownArchitectureError as err:
        raise GrowthError(str(err)) from err
    return config


def depth_plan(params: dict[str, Any], num_layers: int) -> list[depth_ops.LayerRef]:
    """The layer plan of a depth step (validated by the plan functions)."""
    strategy = params.get("strategy")
    if strategy not in STRATEGIES:
        raise GrowthError(f"unknown depth strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if strategy == "slices":
        ranges = params.get("slices")
        if not isinstance(ranges, list) or not all(isinstance(r, list | tuple) and len(r) == 3 for r in ranges):
            raise GrowthError("slices must be a list of [source, start, stop] triples, e.g. [[0, 0, 4], [1, 2, 6]]")
        return depth_ops.slices([tuple(int(x) for x in r) for r in ranges])
    missing = [k for k in STRATEGIES[strategy] if k not in params and k not in ("block", "copies")]
    if missing:
        raise GrowthError(f"depth strategy {strategy} needs {missing}")
    kwargs = {k: int(params[k]) for k in STRATEGIES[strategy] if k in params}
    if strategy == "overlap":
        return depth_ops.overlap(num_layers, **kwargs)
    return getattr(depth_ops, strategy)(num_layers, **kwargs)


@dataclass
class _Shape:
    depth: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    derived_head_dim: bool


def _shape(config) -> _Shape:
    from hf_efftrain.growth.axes import ffn_key

    spec = get_architecture(config)
    geo = spec.geometry(config)
    ffn = getattr(config, ffn_key(config)) or 4 * geo.hidden_size  # GPT-2: n_inner=None means 4 * n_embd
    return _Shape(
        spec.num_layers(config), geo.hidden_size, geo.num_heads, geo.num_kv_heads, geo.head_dim, int(ffn),
        getattr(config, "head_dim", None) is None,
    )  # fmt: skip


def _check_sources(recipe: GrowthRecipe, configs: list) -> None:
    first = configs[0]
    tokenizers = [_tokenizer_fingerprint(Path(s)) for s in recipe.sources]
    for index, config in enumerate(configs[1:], start=1):
        if config.model_type != first.model_type:
            raise GrowthError(f"source {index} is {config.model_type}, source 0 is {first.model_type}")
        if config.vocab_size != first.vocab_size:
            raise GrowthError(
                f"vocabulary mismatch: source {index} has vocab_size {config.vocab_size}, source 0 has "
                f"{first.vocab_size}; sources must share one tokenizer"
            )
        if tokenizers[0] and tokenizers[index] and tokenizers[0] != tokenizers[index]:
            raise GrowthError(f"tokenizer mismatch: the tokenizer files of source {index} differ from source 0's")


def _check_width(params: dict[str, Any], shape: _Shape, masked: bool) -> _Shape:
    hidden = int(params.get("hidden_size") or shape.hidden)
    heads = int(params.get("num_heads") or (hidden // shape.head_dim if shape.derived_head_dim else shape.heads))
    group = shape.heads // shape.kv_heads
    kv = int(params.get("num_kv_heads") or heads // group)
    ffn = int(params.get("intermediate_size") or shape.ffn)
    if hidden < shape.hidden or heads < shape.heads or ffn < shape.ffn or kv < shape.kv_heads:
        raise GrowthError(
            f"width growth cannot shrink: now hidden {shape.hidden}, heads {shape.heads}, ffn {shape.ffn}"
        )
    if shape.derived_head_dim and heads * shape.head_dim != hidden:
        raise GrowthError(
            f"head_dim {shape.head_dim} is fixed: hidden_size {hidden} needs {hidden / shape.head_dim} heads"
        )
    if heads != kv * group:
        raise GrowthError(f"num_kv_heads must be num_heads / {group} to keep the GQA group size")
    if masked and hidden != shape.hidden:
        raise GrowthError("masked_width cannot grow the hidden size; use a width step (Net2Net) for that")
    return _Shape(shape.depth, hidden, heads, kv, shape.head_dim, ffn, shape.derived_head_dim)


def _check_step(recipe: GrowthRecipe, index: int, step: Any, shapes: list[_Shape]) -> list[_Shape]:
    from hf_efftrain.growth.masked import first_occurrences

    if not isinstance(step, dict) or len(step) != 1:
        raise GrowthError(f"step {index} must be a mapping with one key out of {sorted(STEP_KEYS)}")
    (op, params), = step.items()  # fmt: skip
    params = params or {}
    if op not in STEP_KEYS:
        raise GrowthError(f"step {index}: unknown step {op!r}; choose one of {sorted(STEP_KEYS)}")
    if unknown := set(params) - STEP_KEYS[op]:
        raise GrowthError(
            f"step {index} ({op}): unknown parameter(s) {sorted(unknown)}; allowed {sorted(STEP_KEYS[op])}"
        )
    if op.startswith("masked") and index != len(recipe.steps) - 1:
        raise GrowthError(
            f"step {index} ({op}): a masked step must be the last step (a later step builds a new model, which would "
            "run the masked structure unmasked)"
        )
    multi = op == "fusion" or params.get("strategy") == "slices"
    if multi and index > 0:
        raise GrowthError(f"step {index} ({op}): only the first step may combine several sources")
    if index == 0 and len(shapes) > 1 and not multi:
        raise GrowthError(f"{len(shapes)} sources given but step 0 ({op}) uses one; use depth slices or fusion")
    if op == "fusion":
        if len(shapes) != 2 or shapes[0] != shapes[1]:
            raise GrowthError("fusion needs exactly two sources of the same shape (depth, width, heads, MLP)")
        s = shapes[0]
        return [_Shape(s.depth, 2 * s.hidden, 2 * s.heads, 2 * s.kv_heads, s.head_dim, 2 * s.ffn, s.derived_head_dim)]
    if op in ("width", "masked_width"):
        return [_check_width(params, shapes[0], masked=op == "masked_width")]
    plan = depth_plan(params, shapes[0].depth)
    for source, layer in plan:
        if not 0 <= source < len(shapes) or not 0 <= layer < shapes[source].depth:
            depths = [s.depth for s in shapes]
            raise GrowthError(f"step {index}: layer {layer} of source {source} does not exist (source depths {depths})")
    widths = {(shapes[s].hidden, shapes[s].heads, shapes[s].kv_heads, shapes[s].ffn) for s, _ in plan}
    if len(widths) > 1:
        raise GrowthError(f"step {index}: depth fusion needs sources of equal width, got {sorted(widths)}")
    if op == "masked_depth":
        first_occurrences(plan, shapes[0].depth)
    base = shapes[plan[0][0]]
    return [_Shape(len(plan), base.hidden, base.heads, base.kv_heads, base.head_dim, base.ffn, base.derived_head_dim)]


def validate_recipe(recipe: GrowthRecipe) -> dict[str, int]:
    """Check the whole recipe against the sources' configs; returns the final shape (depth, hidden, heads, ffn)."""
    if errors := schema_errors(recipe.to_dict()):  # a recipe built in code skipped from_dict's check
        raise GrowthError("recipe: " + "; ".join(errors))
    if recipe.task is not None and recipe.task not in TASKS:
        raise GrowthError(f"task must be one of {', '.join(TASKS)}, got {recipe.task!r}")
    configs = [load_source_config(s) for s in recipe.sources]
    _check_sources(recipe, configs)
    shapes = [_shape(c) for c in configs]
    for index, step in enumerate(recipe.steps):
        shapes = _check_step(recipe, index, step, shapes)
    final = shapes[0]
    return {"layers": final.depth, "hidden_size": final.hidden, "num_heads": final.heads, "ffn": final.ffn}
