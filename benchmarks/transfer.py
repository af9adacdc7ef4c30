"""Benchmark: trajectory transfer (FGMT) on small BERT-style models, Rotten Tomatoes, 3 seed pairs per scenario.

Scenario 1 (random init): a small transformer trained from scratch with seed A; its trajectory (θ_0, θ_T,
cosine spacing) is transferred onto seed B's initialization. Scenario 2 (pretrained init): small BERT-style
models pretrained independently by masked-LM on the Wikipedia articles (one per seed); the Rotten Tomatoes
fine-tuning trajectory of model A is transferred onto model B. For each pair: accuracy of θ'_0, of the naive
θ'_0 + (θ_T − θ_0) and of the transferred point (before any training), then fine-tuning from the transferred
point and from θ'_0 side by side (same recipe, same data order) until they reach the source's final accuracy.

Models use the MiniLM tokenizer with its vocabulary cut to the most frequent tokens of the two corpora (the rest
map to [UNK]) so that everything fits a shared CPU. Writes ``benchmarks/results/transfer.json`` and ``.md``::

    python -m benchmarks.transfer
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, BertForSequenceClassification

from benchmarks.harness import run_facts, write_result
from hf_efftrain.data import load_rotten_tomatoes, load_wikipedia, minilm_path
from hf_efftrain.transfer import (
    InterpolatedPath,
    LossGradients,
    permutation_spec,
    spacing,
    transfer_trajectory,
    transferred_point,
)

KEYS = (
    "source_final_accuracy",
    "target_init_accuracy",
    "naive_accuracy",
    "transferred_accuracy",
    "steps_to_source_accuracy_from_transfer",
    "steps_to_source_accuracy_from_init",
    "transfer_seconds",
)


# ---- data ---------------------------------------------------------------------------------------------------
@dataclass
class Data:
    """Token-id lists (already mapped to the compact vocabulary) and labels."""

    train: list[tuple[list[int], int]]
    validation: list[tuple[list[int], int]]
    wiki_blocks: torch.Tensor
    vocab_size: int
    pad: int
    mask: int


def load_data(vocab: int, max_length: int, block: int, eval_size: int) -> Data:
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    rt, wiki = load_rotten_tomatoes(seed=0), load_wikipedia(seed=0)

    def encode(texts: list[str], special: bool) -> list[list[int]]:
        return tokenizer(
            texts, truncation=special, max_length=max_length if special else None, add_special_tokens=special
        )["input_ids"]

    rt_train = encode(list(rt["train"]["text"]), True)
    rt_val = encode(list(rt["validation"]["text"])[:eval_size], True)
    wiki_ids = [t for doc in encode(list(wiki["train"]["text"]), False) for t in doc]
    counts = Counter(t for ids in rt_train for t in ids) + Counter(wiki_ids)
    specials = [
        tokenizer.pad_token_id,
        tokenizer.unk_token_id,
        tokenizer.cls_token_id,
        tokenizer.sep_token_id,
        tokenizer.mask_token_id,
    ]
    kept = specials + [t for t, _ in counts.most_common() if t not in specials][: vocab - len(specials)]
    lut = torch.full((tokenizer.vocab_size,), 1, dtype=torch.long)  # unknown -> compact [UNK] (index 1)
    lut[torch.tensor(kept)] = torch.arange(len(kept))

    def compact(ids: list[int]) -> list[int]:
        return lut[torch.tensor(ids, dtype=torch.long)].tolist()

    flat = lut[torch.tensor(wiki_ids)]
    usable = len(flat) // block * block
    return Data(
        train=[(compact(i), y) for i, y in zip(rt_train, list(rt["train"]["label"]), strict=True)],
        validation=[(compact(i), y) for i, y in zip(rt_val, list(rt["validation"]["label"])[:eval_size], strict=True)],
        wiki_blocks=flat[:usable].reshape(-1, block),
        vocab_size=len(kept),
        pad=0,
        mask=4,
    )


def collate(rows: list[tuple[list[int], int]]) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.zeros(len(rows), width, dtype=torch.long)
    attention = torch.zeros(len(rows), width, dtype=torch.long)
    for i, (ids, _) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention[i, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention, "labels": torch.tensor([y for _, y in rows])}


def batches(data: list, batch_size: int, count: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """``count`` training batches in a fixed order (reshuffled each epoch)."""
    gen = torch.Generator().manual_seed(seed)
    out, order = [], []
    while len(out) < count:
        if len(order) < batch_size:
            order = torch.randperm(len(data), generator=gen).tolist()
        out.append(collate([data[i] for i in order[:batch_size]]))
        order = order[batch_size:]
    return out


# ---- models -------------------------------------------------------------------------------------------------
def config(data: Data, opts) -> BertConfig:
    return BertConfig(
        vocab_size=data.vocab_size,
        hidden_size=opts.hidden,
        num_hidden_layers=opts.layers,
        num_attention_heads=opts.heads,
        intermediate_size=4 * opts.hidden,
        max_position_embeddings=opts.block,
        num_labels=2,
        pad_token_id=0,
    )


def classifier(data: Data, opts, seed: int, encoder: dict[str, torch.Tensor] | None = None) -> nn.Module:
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config(data, opts))
    if encoder is not None:
        missing = model.bert.load_state_dict(encoder, strict=False).missing_keys
        assert all(k.startswith("pooler") for k in missing), missing
    return model


def pretrain_mlm(data: Data, opts, seed: int) -> dict[str, torch.Tensor]:
    """Masked-LM pretraining on the Wikipedia blocks; loss only at masked positions (15%)."""
    torch.manual_seed(seed)
    model = BertForMaskedLM(config(data, opts))
    optimizer = torch.optim.AdamW(model.parameters(), lr=opts.pretrain_lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(opts.pretrain_steps):
        ids = data.wiki_blocks[torch.randint(len(data.wiki_blocks), (opts.batch_size,), generator=gen)]
        chosen = torch.rand(ids.shape, generator=gen) < 0.15
        inputs = ids.masked_fill(chosen & (torch.rand(ids.shape, generator=gen) < 0.8), data.mask)
        hidden = model.bert(input_ids=inputs).last_hidden_state
        loss = nn.functional.cross_entropy(model.cls(hidden[chosen]), ids[chosen])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return {k: v.detach().clone() for k, v in model.bert.state_dict().items()}


@torch.no_grad()
def accuracy(model: nn.Module, data: Data, params: dict[str, torch.Tensor] | None = None) -> float:
    if params is not None:
        model.load_state_dict(params, strict=False)
    model.eval()
    correct = 0
    for start in range(0, len(data.validation), 250):
        batch = collate(data.validation[start : start + 250])
        labels = batch.pop("labels")
        correct += int((model(**batch).logits.argmax(-1) == labels).sum())
    return correct / len(data.validation)


def train(
    model: nn.Module,
    data: Data,
    train_batches: list,
    lr: float,
    warmup: int,
    eval_every: int,
    stop_at: float | None = None,
) -> tuple[int | None, list[float]]:
    """AdamW, linear warm-up then constant; returns the first step whose accuracy ≥ ``stop_at`` (or None)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, warmup)))
    curve = []
    if stop_at is not None and accuracy(model, data) >= stop_at:
        return 0, curve
    for step, batch in enumerate(train_batches, start=1):
        model.train()
        model(**batch).loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        if step % eval_every == 0 or step == len(train_batches):
            curve.append(accuracy(model, data))
            if stop_at is not None and curve[-1] >= stop_at:
                return step, curve
    return None, curve


# ---- one seed pair ------------------------------------------------------------------------------------------
def run_pair(data: Data, opts, seed_a: int, seed_b: int, encoders: dict | None, recipe: dict) -> dict:
    source = classifier(data, opts, seed_a, encoders[seed_a] if encoders else None)
    target = classifier(data, opts, seed_b, encoders[seed_b] if encoders else None)
    theta_0 = {n: p.detach().clone() for n, p in source.named_parameters()}
    target_init = {n: p.detach().clone() for n, p in target.named_parameters()}
    order = batches(data.train, opts.batch_size, recipe["cap"], seed=1000 + seed_a)
    train(source, data, order[: recipe["steps"]], recipe["lr"], recipe["warmup"], recipe["steps"])
    theta_T = {n: p.detach().clone() for n, p in source.named_parameters()}
    source_accuracy = accuracy(source, data)

    spec = permutation_spec(target)
    path = InterpolatedPath(theta_0, theta_T, spacing("cosine", opts.transfer_steps))
    grad_batches = batches(data.train, opts.batch_size, opts.transfer_steps * opts.grad_batches, seed=2000 + seed_b)
    per_step = [grad_batches[i * opts.grad_batches : (i + 1) * opts.grad_batches] for i in range(opts.transfer_steps)]
    gradients = LossGradients(classifier(data, opts, seed_b), per_step)
    start = time.perf_counter()
    *_, last = transfer_trajectory(path, target_init, spec, gradients, method="fgmt")
    seconds = time.perf_counter() - start
    naive = transferred_point(spec, theta_T, theta_0, target_init, spec.identity())

    scorer = classifier(data, opts, seed_b)
    row = {
        "seed_source": seed_a,
        "seed_target": seed_b,
        "source_final_accuracy": source_accuracy,
        "target_init_accuracy": accuracy(scorer, data, target_init),
        "naive_accuracy": accuracy(scorer, data, naive),
        "transferred_accuracy": accuracy(scorer, data, last.params),
        "transfer_seconds": seconds,
    }
    # side by side, same recipe and data order: from the transferred point, from the target's own init, and
    # (extra, per pair only) from the naive point, to see how much of the speed-up the permutation brings
    for key, params in (("from_transfer", last.params), ("from_init", target_init), ("from_naive", naive)):
        model = classifier(data, opts, seed_b)
        model.load_state_dict(params, strict=False)
        reached, _ = train(model, data, order, recipe["lr"], recipe["warmup"], opts.eval_every, source_accuracy)
        row[f"steps_to_source_accuracy_{key}"] = reached
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    return row


def summarize(rows: list[dict], facts: dict) -> dict:
    out = {}
    for key in KEYS:
        values = [r[key] for r in rows if r[key] is not None]
        out[key] = statistics.mean(values) if values else None
    out["command"], out["device"] = facts["command"], facts["device"]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[0, 1, 1, 2, 2, 0], help="source/target seeds")
    parser.add_argument("--scenarios", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--block", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-size", type=int, default=500)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--scratch-steps", type=int, default=300)
    parser.add_argument("--scratch-lr", type=float, default=1e-3)
    parser.add_argument("--pretrain-steps", type=int, default=300)
    parser.add_argument("--pretrain-lr", type=float, default=1e-3)
    parser.add_argument("--finetune-steps", type=int, default=200)
    parser.add_argument("--finetune-lr", type=float, default=1e-3)
    parser.add_argument("--transfer-steps", type=int, default=20)
    parser.add_argument("--grad-batches", type=int, default=2)
    parser.add_argument("--name", default="transfer")
    opts = parser.parse_args(argv)
    torch.set_num_threads(1)
    facts = run_facts()
    data = load_data(opts.vocab, opts.max_length, opts.block, opts.eval_size)
    pairs = list(zip(opts.pairs[::2], opts.pairs[1::2], strict=True))
    seeds = sorted({s for pair in pairs for s in pair})
    result, per_pair = {}, {}
    for scenario in opts.scenarios:
        steps = opts.scratch_steps if scenario == 1 else opts.finetune_steps
        lr = opts.scratch_lr if scenario == 1 else opts.finetune_lr
        recipe = {"steps": steps, "lr": lr, "warmup": max(1, steps // 10), "cap": 2 * steps}
        encoders = {s: pretrain_mlm(data, opts, s) for s in seeds} if scenario == 2 else None
        rows = [run_pair(data, opts, a, b, encoders, recipe) for a, b in pairs]
        name = "scenario_1_scratch" if scenario == 1 else "scenario_2_pretrained"
        result[name], per_pair[name] = summarize(rows, facts), rows
    result.update(
        per_pair=per_pair,
        budget_note=(
            f"Shrunk to fit a shared 2-core CPU in <= 25 min: BERT-style {opts.layers} layers, hidden {opts.hidden}, "
            f"{opts.heads} heads, MiniLM tokenizer cut to the {opts.vocab} most frequent tokens; scenario 1 trains "
            f"{opts.scratch_steps} steps from scratch, scenario 2 pretrains {opts.pretrain_steps} MLM steps per seed "
            f"then fine-tunes {opts.finetune_steps} steps; FGMT with T={opts.transfer_steps} cosine-spaced points, "
            f"{opts.grad_batches} batches of {opts.batch_size} per gradient; accuracy on {opts.eval_size} "
            f"validation reviews, checked every {opts.eval_every} steps; fine-tuning runs capped at 2x the source's "
            "steps (null = source accuracy not reached within the cap; means exclude nulls). per_pair also lists "
            "steps_to_source_accuracy_from_naive (fine-tuning from the naive point), not a contract key."
        ),
        **facts,
    )
    write_result(
        opts.name,
        result,
        "Trajectory transfer (FGMT) on small BERT-style models, Rotten Tomatoes",
        tables={name: rows for name, rows in per_pair.items()},
    )


if __name__ == "__main__":
    main()
