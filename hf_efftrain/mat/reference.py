"""Brute-force modular NTKs with ``torch.func.jacrev``: the slow ground truth the fast estimator is tested against.

It differentiates the probe outputs with respect to the *full* projection tensors, then slices each head's
parameters with the architecture registry (:meth:`ArchitectureSpec.head_slices`), independently of the hook
layout used by :mod:`hf_efftrain.mat.ntk`. Only for tiny models (memory grows as outputs × parameters). Example::

    exact = reference_kernels(model, layout, inputs)          # [units, N, N]
    torch.testing.assert_close(unit_kernels(model, layout, inputs), exact, rtol=1e-4, atol=0)
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, jacrev

from hf_efftrain.mat.layout import Layout
from hf_efftrain.mat.ntk import probe_outputs


def _unit_slices(model: nn.Module, layout: Layout, unit: int) -> list[tuple[str, int, slice]]:
    """(parameter name, axis, index) of everything unit ``unit`` owns, from the registry."""
    u = layout.units[unit]
    if u.kind in ("head", "group"):
        geo = layout.arch.geometry(model.config)
        heads = [u.index] if u.kind == "head" else [h for h in range(geo.num_heads) if geo.kv_head_of(h) == u.index]
        slices = []
        for head in heads:
            for piece in layout.arch.head_slices(model, u.layer, head):
                for item in _trainable_slices(model, piece):
                    if item not in slices and model.get_parameter(item[0]).requires_grad:  # a group shares k/v rows
                        slices.append(item)
        return slices
    slices = []
    layer = layout.arch.layer_path(model, u.layer)
    for proj in (*layout.arch.mlp_in, layout.arch.mlp_out):
        module = model.get_submodule(f"{layer}.{proj.path}")
        for name, param in module.named_parameters():
            if param.requires_grad:
                slices.append((f"{layer}.{proj.path}.{name}", 0, slice(None)))
    return slices


def _trainable_slices(model: nn.Module, piece) -> list[tuple[str, int, slice]]:
    """A registry slice of a head, moved onto the LoRA factor that trains when the projection has an adapter."""
    module = model.get_submodule(piece.module)
    if not hasattr(module, "lora_A"):
        base = [(f"{piece.module}.weight", piece.dim, piece.index)]
        return base + ([(f"{piece.module}.bias", 0, piece.index)] if piece.has_bias else [])
    (adapter,) = module.active_adapters
    if piece.role == "o":  # head columns of the output projection: columns of lora_A
        return [(f"{piece.module}.lora_A.{adapter}.weight", 1, piece.index)]
    rows = [(f"{piece.module}.lora_B.{adapter}.weight", 0, piece.index)]
    return rows + (
        [(f"{piece.module}.lora_B.{adapter}.bias", 0, piece.index)] if module.lora_B[adapter].bias is not None else []
    )


def reference_kernels(
    model: nn.Module, layout: Layout, inputs: dict[str, torch.Tensor], output: str = "auto", seed: int = 0
) -> torch.Tensor:
    """Θ_u = J_u J_uᵀ for every unit by explicit Jacobians, [units, N, N] in float64."""
    per_unit = [_unit_slices(model, layout, u) for u in range(len(layout.units))]
    names = sorted({name for slices in per_unit for name, _, _ in slices})
    params = dict(model.named_parameters())
    labels = inputs.get("labels")
    model_inputs = {k: v for k, v in inputs.items() if k != "labels"}

    def f(sub: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = functional_call(model, {**params, **sub}, args=(), kwargs=model_inputs).logits
        return probe_outputs(logits, output, seed, model_inputs.get("attention_mask"), labels).reshape(-1)

    jac = jacrev(f)({name: params[name].detach() for name in names})
    kernels = []
    for slices in per_unit:
        parts = []
        for name, dim, index in slices:
            j = jac[name]  # [N, *param shape]
            parts.append(j.narrow(dim + 1, index.start or 0, (index.stop or j.shape[dim + 1]) - (index.start or 0)))
        flat = torch.cat([p.reshape(p.shape[0], -1) for p in parts], dim=1).double()
        kernels.append(flat @ flat.T)
    return torch.stack(kernels)
