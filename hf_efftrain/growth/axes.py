"""What each axis of each weight means, so width operators can remap any registered architecture.

An axis is *typed* when it indexes one of the model's growable dimensions:

* ``hidden`` — the residual stream (embeddings, norms, every projection reading or writing it);
* ``ffn``    — the MLP's intermediate units;
* ``q``      — query heads x head_dim (q output, attention-output input);
* ``kv``     — key/value heads x head_dim (k and v outputs; fewer than ``q`` under GQA).

and it is either a *write* axis (produces those units: a projection's output, an embedding's columns, a
norm's weight) or a *read* axis (consumes them: a projection's input). Function-preserving width growth
duplicates units along write axes and splits the weights of duplicated units along read axes; fusion
places two models block-diagonally along typed axes. A fused axis (GPT-2's ``c_attn`` = q|k|v) is a tuple
of segments. The attention projections come from the architecture registry; the remaining modules are
typed by their kind (``nn.Embedding``, ``nn.Linear``, ``Conv1D``, convolutions, 1-D norm weights, tensors
added to the residual stream such as ViT's class token) and a dimension equal to the hidden size. Example::

    axes = tensor_axes(model)
    axes["model.layers.0.mlp.down_proj.weight"]   # (Axis(("hidden",), read=False), Axis(("ffn",), read=True))
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from transformers import PreTrainedModel
from transformers.pytorch_utils import Conv1D

from hf_efftrain.architectures import ArchitectureSpec, Projection, get_architecture
from hf_efftrain.errors import GrowthError

FFN_KEYS = ("intermediate_size", "n_inner", "hidden_dim", "ffn_dim")


@dataclass(frozen=True)
class Axis:
    """A typed axis: its segments (one kind each, in order) and whether it reads (True) or writes them."""

    segments: tuple[str, ...]
    read: bool


TensorAxes = tuple[Axis | None, ...]


def ffn_key(config) -> str:
    """The config key holding the MLP width (``n_inner`` for GPT-2, ``hidden_dim`` for DistilBERT...)."""
    for key in FFN_KEYS:
        if hasattr(config, key):
            return key
    raise GrowthError(f"cannot find the MLP width in the {config.model_type} config (looked for {FFN_KEYS})")


def ffn_size(model: PreTrainedModel) -> int:
    """The MLP width, read from the first layer's ``mlp_out`` weight (GPT-2 stores ``n_inner=None``)."""
    spec = get_architecture(model)
    module = spec.layers(model)[0].get_submodule(spec.mlp_out.path)
    return int(module.weight.shape[spec.mlp_out.in_dim()])


def _projection_axes(spec: ArchitectureSpec) -> dict[str, tuple[str, ...] | str]:
    """Layer-relative module path -> its output segments, plus ``"<path>#in"`` -> its input kind."""
    outputs: dict[str, list[tuple[int, str]]] = {}
    inputs: dict[str, str] = {}
    for proj, out_kind, in_kind in (
        (spec.query, "q", "hidden"),
        (spec.key, "kv", "hidden"),
        (spec.value, "kv", "hidden"),
        (spec.output, "hidden", "q"),
        *((p, "ffn", "hidden") for p in spec.mlp_in),
        (spec.mlp_out, "hidden", "ffn"),
    ):
        outputs.setdefault(proj.path, []).append((proj.fused[0], out_kind))
        inputs[proj.path] = in_kind
    table: dict[str, tuple[str, ...] | str] = {p: tuple(k for _, k in sorted(v)) for p, v in outputs.items()}
    table.update({f"{p}#in": k for p, k in inputs.items()})
    return table


def _kind_of(spec: ArchitectureSpec, path: str) -> Projection | None:
    for proj in (spec.query, spec.key, spec.value, spec.output, *spec.mlp_in, spec.mlp_out):
        if proj.path == path:
            return proj
    return None


def _generic_axes(module: nn.Module, name: str, shape: tuple[int, ...], hidden: int) -> TensorAxes:
    write, read = Axis(("hidden",), False), Axis(("hidden",), True)
    if isinstance(module, nn.Embedding):
        return (None, write) if len(shape) == 2 else (None,)
    if isinstance(module, nn.Linear | Conv1D) and name == "weight":
        out_dim = 0 if isinstance(module, nn.Linear) else 1
        axes = [None, None]
        axes[out_dim] = write if shape[out_dim] == hidden else None
        axes[1 - out_dim] = read if shape[1 - out_dim] == hidden else None
        return tuple(axes)
    if len(shape) == 1:
        return (write if shape[0] == hidden else None,)
    if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d) and name == "weight" and hidden not in shape[1:]:
        return (write if shape[0] == hidden else None,) + (None,) * (len(shape) - 1)  # e.g. ViT patch embedding
    if shape[-1] == hidden and hidden not in shape[:-1]:  # added to the residual stream: cls token, positions
        return (None,) * (len(shape) - 1) + (write,)
    if hidden in shape:
        raise GrowthError(
            f"{type(module).__name__}.{name} has shape {shape} with an axis of the hidden size and no known layout; "
            "width growth cannot remap it"
        )
    return (None,) * len(shape)


def tensor_axes(model: PreTrainedModel) -> dict[str, TensorAxes]:
    """For every state-dict tensor, a tuple with one entry per axis: :class:`Axis` or ``None`` (untyped)."""
    spec = get_architecture(model)
    hidden = int(getattr(model.config, spec.hidden_key))
    table = _projection_axes(spec)
    layer_paths = [spec.layer_path(model, i) + "." for i in range(spec.num_layers(model.config))]
    modules = dict(model.named_modules(remove_duplicate=False))
    result: dict[str, TensorAxes] = {}
    for full, tensor in model.state_dict().items():
        module_path, _, name = full.rpartition(".")
        layer = next((p for p in layer_paths if module_path.startswith(p)), None)
        relative = module_path[len(layer) :] if layer else None
        if relative in table:
            proj = _kind_of(spec, relative)
            out_axis = Axis(table[relative], read=False)
            in_axis = Axis((table[f"{relative}#in"],), read=True)
            if tensor.dim() == 1:
                result[full] = (out_axis,)
            else:
                result[full] = (out_axis, in_axis) if proj.out_dim() == 0 else (in_axis, out_axis)
        else:
            result[full] = _generic_axes(modules[module_path], name, tuple(tensor.shape), hidden)
    return result
