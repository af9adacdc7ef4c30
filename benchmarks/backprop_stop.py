"""Benchmark: how much of a LoRA step's backward work a back-propagation stop below layer k would save.

With LoRA the frozen base computes no weight gradient, so nearly all of a step's backward FLOPs are input
gradients, which every layer above the lowest trainable one must compute. Skipping a gated head's adapter
weight gradient (what MAT does) therefore saves ~0.1%; only a stop below which nothing trains saves more. This
measures, with ``torch.utils.flop_counter``, the backward FLOPs of one step with the hidden states detached at
the input of layer k (everything below it frozen for that step), against the full backward, for each k. Read
with ``causal_lm_mat_depth.json``: MAT keeps heads of layer 0 active at every probe on SmolLM2, so the stop
never fires there. Writes ``benchmarks/results/backprop_stop.json`` and ``.md``::

    python -m benchmarks.backprop_stop                       # SmolLM2 + LoRA r=8 on q/k/v/o, batch 4 x 128
    python -m benchmarks.backprop_stop --model tiny --no-write
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import default_data_collator

from benchmarks.causal_lm import load_lora_model, load_task
from benchmarks.harness import run_facts, write_result
from hf_efftrain.architectures import get_architecture


def _detach_input(_module, args, kwargs):
    """Forward pre-hook: the layer's hidden states enter without a gradient path below them."""
    if args:
        return (args[0].detach(), *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": kwargs["hidden_states"].detach()}


def backward_flops(model, batch: dict[str, torch.Tensor], stop: int, forward: float) -> float:
    """Backward FLOPs of one step (forward + backward counted, minus one forward) with a stop below layer ``stop``."""
    layers = get_architecture(model).layers(model)
    hook = layers[stop].register_forward_pre_hook(_detach_input, with_kwargs=True) if stop else None
    try:
        with FlopCounterMode(display=False) as mode:
            model(**batch).loss.backward()
    finally:
        if hook is not None:
            hook.remove()
        model.zero_grad(set_to_none=True)
    return float(mode.get_total_flops()) - forward


def measure(model, batch: dict[str, torch.Tensor], stops: list[int]) -> dict[str, Any]:
    """Backward ratio against no stop, for each stop layer; the lowest stop that brings it under 0.9."""
    with torch.no_grad(), FlopCounterMode(display=False) as mode:
        model(**batch)
    forward = float(mode.get_total_flops())
    full = backward_flops(model, batch, 0, forward)
    ratios = {str(k): backward_flops(model, batch, k, forward) / full for k in stops}
    under = [int(k) for k, r in ratios.items() if r < 0.9]
    return {
        "forward_flops": forward,
        "backward_flops": full,
        "backward_ratio_by_stop_layer": ratios,
        "lowest_stop_under_0_9": min(under) if under else None,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", help="smollm2 (offline), a folder, or tiny (random, for tests)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank on q/k/v/o (alpha = 2 × rank)")
    parser.add_argument("--stops", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6, 8], help="stop layers to count")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--name", default="backprop_stop")
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    opts = _parser().parse_args(argv)
    torch.set_num_threads(1)
    load_opts = argparse.Namespace(**vars(opts), validation_articles=10, eval_blocks=1)
    tokenizer, blocks, folder = load_task(load_opts)
    model = load_lora_model(folder, load_opts, len(tokenizer), seed=0).train()
    depth = len(get_architecture(model).layers(model))
    stops = [k for k in opts.stops if 0 < k < depth]
    if not stops:
        raise SystemExit(f"--stops must name layers in 1..{depth - 1}")
    batch = default_data_collator([blocks["train"][i] for i in range(opts.batch_size)])
    result = measure(model, dict(batch), stops)
    result |= {
        "model": folder if opts.model != "smollm2" else "SmolLM2-135M-Instruct (dequantized Q4_1 GGUF)",
        "layers": depth,
        "lora": f"rank {opts.rank} on q/k/v/o",
        "batch": f"{opts.batch_size} x {opts.block_size} tokens",
        **run_facts(),
    }
    if not opts.no_write:
        rows = [
            {"stop below layer": k, "backward FLOPs ratio": r}
            for k, r in result["backward_ratio_by_stop_layer"].items()
        ]
        write_result(opts.name, result, "LoRA: backward work left by a back-propagation stop", {"By stop layer": rows})
    else:
        print(result)
    return result


if __name__ == "__main__":
    main()
