"""λmax of every module's NTK from ONE probe forward + backward, exactly, on the n×n side.

Why: a module's NTK Θ_u = J_u J_uᵀ (J_u = ∂f(X)/∂θ_u over n probe samples) has the same nonzero
eigenvalues as the huge J_uᵀ J_u, so an n×n (or nC×nC for C logits) matrix suffices. For a projection
y = W x, the per-sample gradient is Σ_t Δ_i[t] x_i[t]ᵀ, built from the input X_i (forward hook) and the
output gradient Δ_i (``autograd.grad`` w.r.t. the projection's output; one batched backward serves every
measured output). Two exact contractions give the Gram:

* ``gram`` (the trick of the method note): ⟨g_i, g_j⟩ = Σ (Δ_i Δ_jᵀ) ⊙ (X_i X_jᵀ), cost ~ N²T²(I+O);
* ``persample``: G_i = Δ_iᵀ X_i as one einsum (no Python loop), then G Gᵀ, cost ~ (NT + N²)·O·I.

``auto`` takes the cheaper per projection (for MiniLM at 64 tokens that is ``persample``). A head's kernel is the
sum over its pieces (q/k/v rows, output-projection columns, biases of its rows). Example::

    layout = build_layout(model)
    lam = estimate_lambda_max(model, layout, {"input_ids": ids, "attention_mask": mask})   # shape [units]
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch
from torch import nn

from hf_efftrain.errors import MATConfigError
from hf_efftrain.mat.layout import Layout, ModuleLayout

MAX_EXACT_LOGITS = 16


def resolve_output(mode: str, logits: torch.Tensor) -> str:
    """``auto`` becomes ``logits`` for at most 16 logits per sample, else ``projection``."""
    if mode != "auto":
        return mode
    return "logits" if logits.dim() == 2 and logits.shape[-1] <= MAX_EXACT_LOGITS else "projection"


def probe_outputs(
    logits: torch.Tensor, mode: str, seed: int = 0, mask: torch.Tensor | None = None, labels=None
) -> torch.Tensor:
    """The functions whose NTK is measured, as a [C, n] tensor (row c = output c of every sample).

    ``logits``: every logit. ``projection``: ⟨R, logits_i⟩ with a fixed Gaussian R (seeded; padded positions
    masked). ``loss``: per-sample cross-entropy (a residual-weighted kernel, not the NTK; classification only).
    """
    mode = resolve_output(mode, logits)
    if mode == "logits":
        if logits.dim() != 2:
            raise MATConfigError("output='logits' needs one logit vector per sample; use output='projection' for LMs")
        return logits.transpose(0, 1)
    if mode == "projection":  # drawn where the logits live, at their (padding-trimmed) size
        gen = torch.Generator(device=logits.device).manual_seed(seed)
        proj = torch.randn(logits.shape[1:], generator=gen, dtype=torch.float32, device=logits.device)
        weighted = logits * proj.to(logits.dtype)
        if mask is not None and logits.dim() == 3:
            weighted = weighted * mask[..., None].to(logits)
        return weighted.flatten(1).sum(1)[None]
    if mode == "loss":
        if labels is None or logits.dim() != 2:
            raise MATConfigError("output='loss' needs labels and sequence-classification logits")
        return nn.functional.cross_entropy(logits, labels, reduction="none")[None]
    raise MATConfigError(f"unknown MAT output {mode!r}; choose auto, logits, projection or loss")


@contextmanager
def capture(layout: Layout):
    """Record (input, output) of every hooked projection during the forward inside the block."""
    records: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(layout.modules)

    def hook_for(i: int):
        def hook(_module, args, output):
            records[i] = (args[0].detach(), output)

        return hook

    handles = [m.module.register_forward_hook(hook_for(i)) for i, m in enumerate(layout.modules)]
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()


def _wide(t: torch.Tensor) -> torch.Tensor:
    """At least float32 (bf16/fp16 activations would lose the kernel's small entries)."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _strategy(entry: ModuleLayout, n: int, tokens: int, choice: str) -> str:
    if choice != "auto":
        return choice
    gram_cost = n * n * tokens * tokens * (entry.in_features + entry.out_features)
    persample_cost = (n * tokens + n * n) * entry.out_features * entry.in_features
    return "gram" if gram_cost < persample_cost else "persample"


def _piece_views(entry: ModuleLayout, x: torch.Tensor, d: torch.Tensor, start: int, stop: int):
    if entry.axis == "out":
        return x, d[..., start:stop]
    return x[..., start:stop], d


def module_grams(entry: ModuleLayout, x: torch.Tensor, d: torch.Tensor, strategy: str) -> list[torch.Tensor]:
    """One [N, N] Gram per piece of ``entry``; ``x`` is [N, T, I], ``d`` is [N, T, O] (N = outputs × samples)."""
    grams = []
    shared_x = torch.einsum("itd,jud->ijtu", x, x) if strategy == "gram" and entry.axis == "out" else None
    shared_d = torch.einsum("ito,juo->ijtu", d, d) if strategy == "gram" and entry.axis == "in" else None
    full = torch.einsum("ito,itd->iod", d, x) if strategy == "persample" else None
    for piece in entry.pieces:
        xs, ds = _piece_views(entry, x, d, piece.start, piece.stop)
        if strategy == "gram":
            px = shared_x if shared_x is not None else torch.einsum("itd,jud->ijtu", xs, xs)
            pd = shared_d if shared_d is not None else torch.einsum("ito,juo->ijtu", ds, ds)
            gram = (px * pd).sum((2, 3))
        else:
            part = full[:, piece.start : piece.stop] if entry.axis == "out" else full[:, :, piece.start : piece.stop]
            flat = part.reshape(part.shape[0], -1)
            gram = flat @ flat.T
        if piece.bias:
            summed = ds.sum(1)
            gram = gram + summed @ summed.T
        grams.append(gram)
    return grams


def output_gradients(outs: torch.Tensor, outputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """∂outs[c].sum() / ∂output for every hooked output, as one [C, *output.shape] tensor per projection.

    All C measured outputs go through ONE batched backward (``is_grads_batched``, a vmap over the backward);
    where an operator has no batching rule the C backwards run one after another, with the same result.
    """
    count = outs.shape[0]
    if count > 1:
        seeds = torch.eye(count, dtype=outs.dtype, device=outs.device)[:, :, None].expand(count, *outs.shape)
        try:
            with warnings.catch_warnings():  # vmap's per-operator fallback notice: correct, only slower
                warnings.filterwarnings("ignore", message="There is a performance drop")
                grads = torch.autograd.grad(
                    outs, outputs, grad_outputs=seeds, retain_graph=True, allow_unused=True, is_grads_batched=True
                )
            return [_zeros_if_none(g, o, count) for g, o in zip(grads, outputs, strict=True)]
        except RuntimeError:
            pass  # no vmap rule for some operator of this model: fall back to one backward per output
    per_output: list[list[torch.Tensor]] = [[] for _ in outputs]
    for c in range(count):
        grads = torch.autograd.grad(outs[c].sum(), outputs, retain_graph=c < count - 1, allow_unused=True)
        for i, g in enumerate(grads):
            per_output[i].append(torch.zeros_like(outputs[i]) if g is None else g.detach())
    return [torch.stack(gs) for gs in per_output]


def _zeros_if_none(grad: torch.Tensor | None, output: torch.Tensor, count: int) -> torch.Tensor:
    return output.new_zeros(count, *output.shape) if grad is None else grad.detach()


def unit_kernels(
    model: nn.Module,
    layout: Layout,
    inputs: dict[str, torch.Tensor],
    output: str = "auto",
    seed: int = 0,
    strategy: str = "auto",
) -> torch.Tensor:
    """The modular NTK of every unit, shape [units, N, N] with N = outputs × samples (float64)."""
    labels = inputs.get("labels")
    model_inputs = {k: v for k, v in inputs.items() if k != "labels"}
    with torch.enable_grad(), capture(layout) as records:
        logits = model(**model_inputs).logits
    if any(r is None for r in records):
        raise MATConfigError("some hooked projections did not run in the probe forward; is the layout right?")
    outs = probe_outputs(logits, output, seed, model_inputs.get("attention_mask"), labels)
    outputs = [r[1] for r in records]
    deltas = output_gradients(outs, outputs)
    n_out = outs.shape[0] * outs.shape[1]
    kernels = torch.zeros(len(layout.units), n_out, n_out, dtype=torch.float64, device=logits.device)
    for entry, (x, _y), ds in zip(layout.modules, records, deltas, strict=True):
        x3 = _wide(x.reshape(x.shape[0], -1, x.shape[-1]))
        x_rep = x3.repeat(ds.shape[0], 1, 1)  # output c of sample i pairs with input i
        d3 = _wide(ds.reshape(ds.shape[0] * ds.shape[1], -1, ds.shape[-1]))  # [C·n, T, O], output-major
        grams = module_grams(entry, x_rep, d3, _strategy(entry, n_out, x3.shape[1], strategy))
        for piece, gram in zip(entry.pieces, grams, strict=True):
            for unit in piece.units:
                kernels[unit] += gram.double()
    return kernels


def lambda_max(kernels: torch.Tensor) -> torch.Tensor:
    """Largest eigenvalue of each symmetric kernel in a [U, N, N] stack."""
    return torch.linalg.eigvalsh(kernels).amax(-1)


def estimate_lambda_max(
    model: nn.Module,
    layout: Layout,
    inputs: dict[str, torch.Tensor],
    output: str = "auto",
    seed: int = 0,
    strategy: str = "auto",
) -> torch.Tensor:
    """λmax of every unit's modular NTK on the probe batch ``inputs`` (run the model in eval mode)."""
    return lambda_max(unit_kernels(model, layout, inputs, output, seed, strategy))
