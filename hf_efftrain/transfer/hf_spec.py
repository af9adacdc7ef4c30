"""Permutation specs of 🤗 Transformers models, generated from the architecture registry.

Which symmetries are exact in a pre-norm or post-norm transformer:

* **one** residual-stream permutation ("residual") for the whole network — embedding columns, every
  LayerNorm/RMSNorm, the input axis of q/k/v and of the MLP, the output rows of the attention output and
  MLP output projections, the final norm and the input of every head. A permutation per layer would not
  commute with the residual additions, so it is not a symmetry.
* per layer a free permutation of the MLP hidden units ("mlp.i"; Llama's gate and up share it) and the block
  permutations of attention ("attn.i", :class:`~hf_efftrain.transfer.groups.AttentionGroup`).

Inside the layers the registry says where q/k/v/o and the MLP live. Outside them a few shape rules suffice:
embeddings permute their columns, norms and the last axis of raw parameters (ViT's class token and position
table) follow the residual stream, and a head's linear or conv reads the residual stream on its input and
writes it when its output has the hidden size (a pooler, an LM transform) — keeping those on the residual
permutation is exact whether a classifier reads the pooler or the stream, and it makes tied embeddings
(``lm_head`` = ``wte``) consistent. Outputs of another size (classes, vocabulary) are never permuted.
Example::

    spec = permutation_spec(model)                      # any registered family
    permuted = spec.apply(model.state_dict(), spec.random_permutation(seed=0))
"""

from __future__ import annotations

from torch import nn

from hf_efftrain.architectures import ArchitectureSpec, Projection, get_architecture
from hf_efftrain.errors import PermutationSpecError
from hf_efftrain.transfer.groups import AttentionGroup, FreeGroup
from hf_efftrain.transfer.spec import AxisPart, PermutationSpec, SpecBuilder

RESIDUAL = "residual"


def permutation_spec(model: nn.Module) -> PermutationSpec:
    """The exact permutation symmetries of a registered transformer (see the module docstring)."""
    arch = get_architecture(model)
    geo = arch.geometry(model.config)
    builder = SpecBuilder().group(RESIDUAL, FreeGroup(geo.hidden_size))
    covered: set[str] = set()
    for layer in range(arch.num_layers(model.config)):
        covered |= _layer_axes(builder, model, arch, layer)
    for name, module, param_name, param in _direct_parameters(model):
        full = f"{name}.{param_name}" if name else param_name
        if full not in covered:
            _head_axes(builder, full, module, param_name, param.shape, geo.hidden_size)
    spec = builder.build()
    spec.check_shapes({n: tuple(p.shape) for n, p in model.named_parameters(remove_duplicate=False)})
    return spec


def _direct_parameters(model: nn.Module):
    """(module path, module, local name, parameter) for every parameter, tied copies included."""
    for name, module in model.named_modules(remove_duplicate=False):
        for param_name, param in module.named_parameters(recurse=False):
            yield name, module, param_name, param


def _weight_axes(proj: Projection) -> tuple[int, int]:
    return proj.out_dim(), proj.in_dim()


def _layer_axes(builder: SpecBuilder, model: nn.Module, arch: ArchitectureSpec, layer: int) -> set[str]:
    """Axes of one transformer layer; returns the parameter names it covered."""
    geo = arch.geometry(model.config)
    prefix = arch.layer_path(model, layer)
    attn, mlp = f"attn.{layer}", f"mlp.{layer}"
    builder.group(attn, AttentionGroup(geo.num_heads, geo.num_kv_heads, geo.head_dim, rotary=arch.rotary))
    first_in = model.get_submodule(f"{prefix}.{arch.mlp_in[0].path}")
    builder.group(mlp, FreeGroup(first_in.weight.shape[arch.mlp_in[0].out_dim()]))
    covered: set[str] = set()
    # q/k/v: output rows by attention role (a fused module lists its parts in order), input = residual
    fused: dict[str, list[tuple[int, str, Projection]]] = {}
    for role, proj in (("q", arch.query), ("k", arch.key), ("v", arch.value)):
        fused.setdefault(proj.path, []).append((proj.fused[0], role, proj))
    writers = [
        (path, tuple(AxisPart(attn, r) for _, r, _ in sorted(parts)), parts[0][2]) for path, parts in fused.items()
    ]
    writers += [(p.path, (AxisPart(mlp),), p) for p in arch.mlp_in]
    for path, out_parts, proj in writers:
        covered |= _linear(builder, f"{prefix}.{path}", proj, model, out_parts, (AxisPart(RESIDUAL),))
    for proj, in_part in ((arch.output, AxisPart(attn, "o")), (arch.mlp_out, AxisPart(mlp))):
        covered |= _linear(builder, f"{prefix}.{proj.path}", proj, model, (AxisPart(RESIDUAL),), (in_part,))
    layer_module = model.get_submodule(prefix)
    for name, param in layer_module.named_parameters():
        full = f"{prefix}.{name}"
        if full in covered:
            continue
        if param.dim() != 1 or param.shape[0] != geo.hidden_size:
            raise PermutationSpecError(
                f"{full} {tuple(param.shape)}: no rule says how it is permuted; describe the model with "
                "hf_efftrain.transfer.SpecBuilder"
            )
        builder.axis(full, 0, RESIDUAL)  # LayerNorm / RMSNorm of the residual stream
        covered.add(full)
    return covered


def _linear(
    builder: SpecBuilder,
    path: str,
    proj: Projection,
    model: nn.Module,
    out_parts: tuple[AxisPart, ...],
    in_parts: tuple[AxisPart, ...],
) -> set[str]:
    module = model.get_submodule(path)
    module = getattr(module, "base_layer", module)
    out_dim, in_dim = _weight_axes(proj)
    builder.axis(f"{path}.weight", out_dim, *out_parts).axis(f"{path}.weight", in_dim, *in_parts)
    names = {f"{path}.weight"}
    if getattr(module, "bias", None) is not None:
        builder.axis(f"{path}.bias", 0, *out_parts)
        names.add(f"{path}.bias")
    return names


def _head_axes(builder: SpecBuilder, full: str, module: nn.Module, local: str, shape, hidden: int) -> None:
    """Shape rules for parameters outside the transformer layers (embeddings, norms, poolers, heads)."""

    def fail(reason: str) -> PermutationSpecError:
        return PermutationSpecError(
            f"{full} {tuple(shape)} ({type(module).__name__}): {reason}; describe the model with "
            "hf_efftrain.transfer.SpecBuilder"
        )

    if isinstance(module, nn.Embedding):
        if shape[1] != hidden:
            raise fail(f"embedding width differs from the hidden size {hidden}")
        builder.axis(full, 1, RESIDUAL)
        return
    is_conv1d = type(module).__name__ == "Conv1D"  # GPT-2 style: weight [in, out]
    if isinstance(module, nn.Linear | nn.Conv2d | nn.Conv1d) or is_conv1d:
        out_dim, in_dim = (1, 0) if is_conv1d else (0, 1)
        if local == "bias":
            if shape[0] == hidden:
                builder.axis(full, 0, RESIDUAL)
            return
        is_linear = not isinstance(module, nn.Conv2d | nn.Conv1d)
        if is_linear and shape[in_dim] != hidden:
            raise fail(f"its input width {shape[in_dim]} is not the hidden size {hidden}")
        if shape[out_dim] == hidden:
            builder.axis(full, out_dim, RESIDUAL)
        if is_linear:
            builder.axis(full, in_dim, RESIDUAL)
        return
    if len(shape) >= 1 and shape[-1] == hidden:  # norms, class tokens, position tables
        builder.axis(full, len(shape) - 1, RESIDUAL)
