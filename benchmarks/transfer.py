"""Benchmark: trajectory transfer (FGMT) on small BERT-style models, Rotten Tomatoes, 3 seed pairs per scenario.

Scenario 1 (random init): a small transformer trained from scratch with seed A; its trajectory (θ_0, θ_T,
cosine spacing) is transferred onto seed B's initialization. Scenario 2 (pretrained init): small BERT-style
models pretrained independently by masked-LM on the Wikipedia articles (one per seed); the Rotten Tomatoes
fine-tuning trajectory of model A is transferred onto model B. For each pair: accuracy of θ'_0, of the naive
θ'_0 + (θ_T − θ_0) and of the transferred point (before any training), then fine-tuning from the transferred
point and from θ'_0 side by side (same recipe, same data order) until they reach the source's final accuracy.

Scenarios 3 and 4 use the real MiniLM-L6 (the shared recipe's tokenizer, max_length 64): model A is MiniLM with a
seed-A classifier head, fine-tuned on Rotten Tomatoes; its trajectory is transferred onto MiniLM with a seed-B
head (3: the paper's fine-tuning case, a shared pretrained body) and onto MiniLM first fine-tuned differently
(4: seed-B head, its own data order, a higher learning rate, ``--minilm-target-steps`` steps).

Scenarios 1 and 2 use the MiniLM tokenizer with its vocabulary cut to the most frequent tokens of the two
corpora (the rest map to [UNK]) so that everything fits a shared CPU. Writes ``benchmarks/results/transfer.json``
and ``.md``; ``--update`` keeps the scenarios of the existing file that this run does not make::

    python -m benchmarks.transfer                                 # scenarios 1 and 2
    python -m benchmarks.transfer --scenarios 3 4 --update        # the MiniLM scenarios, added to the file

Scenarios are independent, so two processes can run them side by side (one core each), each under its own
``--name``; ``--include`` then copies their scenarios, with their own command, date and budget, into the file::

    python -m benchmarks.transfer --scenarios 3 --name transfer_s3 &
    python -m benchmarks.transfer --scenarios 4 --name transfer_s4 & wait
    python -m benchmarks.transfer --scenarios --update --include transfer_s3 transfer_s4
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, BertForSequenceClassification
from transformers.utils import logging

from benchmarks.harness import RESULTS_DIR, run_facts, write_result
from benchmarks.transfer_speed import speed_keys
from hf_efftrain.data import load_rotten_tomatoes, load_wikipedia, minilm_path
from hf_efftrain.transfer import (
    InterpolatedPath,
    LossGradients,
    permutation_spec,
    spacing,
    transfer_trajectory,
    transferred_point,
)
from hf_efftrain.transfer.prior import resolve_prior

TITLE = "Trajectory transfer (FGMT): small BERT-style models and the real MiniLM-L6, Rotten Tomatoes"
KEYS = (
    "source_final_accuracy",
    "target_init_accuracy",
    "naive_accuracy",
    "transferred_accuracy",
    "steps_to_source_accuracy_from_transfer",
    "steps_to_source_accuracy_from_init",
    "transfer_seconds",
)
SCENARIOS = {
    1: "scenario_1_scratch",
    2: "scenario_2_pretrained",
    3: "scenario_3_minilm_head",
    4: "scenario_4_minilm_finetuned",
}


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


@functools.cache  # scenarios 1 and 2 share it: tokenize and compact the corpora once
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


def minilm_data(max_length: int, eval_size: int) -> Data:
    """Rotten Tomatoes in MiniLM-L6's own vocabulary (no compaction): the real model's inputs."""
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    rt = load_rotten_tomatoes(seed=0)

    def rows(split, count: int | None = None) -> list[tuple[list[int], int]]:
        texts, labels = list(split["text"])[:count], list(split["label"])[:count]
        ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        return list(zip(ids, labels, strict=True))

    return Data(
        train=rows(rt["train"]),
        validation=rows(rt["validation"], eval_size),
        wiki_blocks=torch.empty(0, 1, dtype=torch.long),
        vocab_size=tokenizer.vocab_size,
        pad=tokenizer.pad_token_id,
        mask=tokenizer.mask_token_id,
    )


def minilm_classifier(seed: int) -> nn.Module:
    """MiniLM-L6 with a classifier head drawn from ``seed`` (the head is new by design: no missing-weights report)."""
    logging.set_verbosity_error()
    torch.manual_seed(seed)
    return BertForSequenceClassification.from_pretrained(minilm_path(), num_labels=2)


def params_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


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
def run_pair(
    data: Data,
    opts,
    build: Callable[[int], nn.Module],
    seed_a: int,
    seed_b: int,
    recipe: dict,
    target_init: dict[str, torch.Tensor] | None = None,
) -> dict:
    """Train A, transfer its trajectory onto B's start (``build(seed_b)``'s weights unless ``target_init``)."""
    source = build(seed_a)
    theta_0 = params_of(source)
    target_init = target_init if target_init is not None else params_of(build(seed_b))
    order = batches(data.train, opts.batch_size, recipe["cap"], seed=1000 + seed_a)
    train(source, data, order[: recipe["steps"]], recipe["lr"], recipe["warmup"], recipe["steps"])
    theta_T = params_of(source)
    source_accuracy = accuracy(source, data)
    del source

    target = build(seed_b)
    spec = permutation_spec(target)
    path = InterpolatedPath(theta_0, theta_T, spacing(opts.spacing, recipe["transfer_steps"]))
    count = recipe["transfer_steps"] * opts.grad_batches
    grad_batches = batches(data.train, opts.batch_size, count, seed=2000 + seed_b)
    per_step = [grad_batches[i * opts.grad_batches : (i + 1) * opts.grad_batches] for i in range(len(path) - 1)]
    gradients = LossGradients(target, per_step)
    start = time.perf_counter()
    prior = resolve_prior(spec, theta_0, target_init, opts.stay, opts.stay_at, opts.warm_start)
    knobs = {"pin_shared": opts.pin_shared, "stay": prior.stay, "stay_at": prior.at, "warm_start": prior.warm_start}
    *_, last = transfer_trajectory(path, target_init, spec, gradients, "fgmt", opts.max_sweeps, **knobs)
    seconds = time.perf_counter() - start
    naive = transferred_point(spec, theta_T, theta_0, target_init, spec.identity())

    row = {
        "seed_source": seed_a,
        "seed_target": seed_b,
        "source_final_accuracy": source_accuracy,
        "target_init_accuracy": accuracy(target, data, target_init),
        "naive_accuracy": accuracy(target, data, naive),
        "transferred_accuracy": accuracy(target, data, last.params),
        "transfer_seconds": seconds,
        "transfer_seconds_per_step": seconds / (len(path) - 1),
        "units_moved": units_moved(spec, last.permutation),
        "pinned_groups": len(spec.shared_groups(theta_0, target_init)) if opts.pin_shared else 0,
        "prior_stay": prior.stay,
        "prior_at": prior.at,
        "warm_start": prior.warm_start,
        "start_similarity": prior.similarity,
        "groups": len(spec.groups),
    }
    # side by side, same recipe and data order: from the transferred point, from the target's own init, and
    # (extra, per pair only) from the naive point, to see how much of the speed-up the permutation brings
    for key, params in (("from_transfer", last.params), ("from_init", target_init), ("from_naive", naive)):
        if key.removeprefix("from_") not in opts.curves:
            row[f"steps_to_source_accuracy_{key}"] = None
            continue
        target.load_state_dict(params, strict=False)
        torch.manual_seed(3000 + seed_b)  # the same dropout masks for every arm, whatever ran before it
        reached, _ = train(target, data, order, recipe["lr"], recipe["warmup"], opts.eval_every, source_accuracy)
        row[f"steps_to_source_accuracy_{key}"] = reached
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    return row


def units_moved(spec, permutation: dict) -> float:
    """Share of permuted rows/columns (over every group's roles) not in their own place: 0 = the naive transfer."""
    moved = total = 0
    for name, group in spec.groups.items():
        for role in group.roles():
            index = group.composite(permutation[name], role)
            moved += int((index != torch.arange(len(index))).sum())
            total += len(index)
    return moved / max(1, total)


def finetuned_start(data: Data, opts, seed: int) -> dict[str, torch.Tensor]:
    """Scenario 4's target: MiniLM with a seed-``seed`` head, fine-tuned on its own data order at 2x the lr."""
    model = minilm_classifier(seed)
    order = batches(data.train, opts.batch_size, opts.minilm_target_steps, seed=3000 + seed)
    train(model, data, order, 2 * opts.minilm_lr, max(1, opts.minilm_target_steps // 10), opts.minilm_target_steps)
    return params_of(model)


def run_scenario(scenario: int, opts, pairs: list[tuple[int, int]]) -> list[dict]:
    seeds = sorted({s for pair in pairs for s in pair})
    if scenario in (1, 2):
        data = load_data(opts.vocab, opts.max_length, opts.block, opts.eval_size)
        steps = opts.scratch_steps if scenario == 1 else opts.finetune_steps
        lr = opts.scratch_lr if scenario == 1 else opts.finetune_lr
        encoders = {s: pretrain_mlm(data, opts, s) for s in seeds} if scenario == 2 else None

        def build(seed: int) -> nn.Module:
            return classifier(data, opts, seed, encoders[seed] if encoders else None)

        recipe = {"steps": steps, "lr": lr, "warmup": max(1, steps // 10), "cap": 2 * steps}
        recipe["transfer_steps"] = opts.transfer_steps
        return [run_pair(data, opts, build, a, b, recipe) for a, b in pairs]
    data = minilm_data(64, opts.eval_size)
    steps = opts.minilm_steps
    recipe = {"steps": steps, "lr": opts.minilm_lr, "warmup": max(1, steps // 10), "cap": 2 * steps}
    recipe["transfer_steps"] = opts.minilm_transfer_steps
    starts = {b: finetuned_start(data, opts, b) for _, b in pairs} if scenario == 4 else {}
    return [run_pair(data, opts, minilm_classifier, a, b, recipe, starts.get(b)) for a, b in pairs]


def summarize(rows: list[dict], facts: dict) -> dict:
    out = {}
    for key in KEYS:
        values = [r[key] for r in rows if r[key] is not None]
        out[key] = statistics.mean(values) if values else None
    out["command"], out["device"] = facts["command"], facts["device"]
    return out


def budget_note(opts, scenario: int) -> str:
    checks = f"accuracy on {opts.eval_size} validation reviews, checked every {opts.eval_every} steps"
    cap = "fine-tuning runs capped at 2x the source's steps (null = not reached within the cap; means exclude nulls)"
    if scenario in (1, 2):
        return (
            f"Shrunk to fit a shared 2-core CPU: BERT-style {opts.layers} layers, hidden {opts.hidden}, {opts.heads} "
            f"heads, MiniLM tokenizer cut to the {opts.vocab} most frequent tokens; scenario 1 trains "
            f"{opts.scratch_steps} steps from scratch, scenario 2 pretrains {opts.pretrain_steps} MLM steps per seed "
            f"then fine-tunes {opts.finetune_steps} steps; FGMT with T={opts.transfer_steps} {opts.spacing}-spaced "
            f"points, {opts.grad_batches} batches of {opts.batch_size} per gradient{_prior_words(opts)}; {checks}; "
            f"{cap}."
        )
    target = (
        "MiniLM-L6 with the target seed's head"
        if scenario == 3
        else f"MiniLM-L6 with the target seed's head fine-tuned {opts.minilm_target_steps} steps (own data order, "
        f"lr {2 * opts.minilm_lr})"
    )
    return (
        f"Real MiniLM-L6 at max_length 64, batch {opts.batch_size}: the source fine-tunes {opts.minilm_steps} steps "
        f"(AdamW lr {opts.minilm_lr}, warm-up then constant); target: {target}; FGMT with "
        f"T={opts.minilm_transfer_steps} {opts.spacing}-spaced points, {opts.grad_batches} batches per gradient, "
        f"max_sweeps {opts.max_sweeps}, {'pin_shared' if opts.pin_shared else 'every group matched'}"
        f"{_prior_words(opts)}; {checks}; "
        f"{cap}; curves run from: {', '.join(opts.curves)}."
    )


def _prior_words(opts) -> str:
    """The matching's prior as asked on the command line (each pair's row records what it resolved to)."""
    start = {True: "warm-started", False: "each step from the identity", None: "warm-started when related"}
    if opts.stay is None and opts.stay_at == "auto":
        return (
            ", prior by the starts' relation (stay 1 at the identity when they share pretrained weights, else none), "
            f"{start[opts.warm_start]}"
        )
    stay = "the default strength" if opts.stay is None else f"stay {opts.stay}"
    return f", {stay} at the {opts.stay_at} permutation, {start[opts.warm_start]}"


def include_scenarios(result: dict, per_pair: dict, names: list[str]) -> None:
    """Copy every scenario (its summary with its own command, date and budget, and its per-pair rows) of the result
    files ``names`` into ``result``: scenarios run side by side in separate processes end in one file. A scenario
    split by pairs over several files (``--pairs``) is joined: its rows in file order, its means over all of them,
    every part's command."""
    parts: dict[str, list[tuple[dict, list[dict]]]] = {}
    for other in names:
        path = RESULTS_DIR / f"{other}.json"
        if not path.is_file():
            raise SystemExit(f"--include {other}: {path} does not exist; run that scenario with --name {other} first")
        data = json.loads(path.read_text())
        found = [name for name in SCENARIOS.values() if name in data and name in data.get("per_pair", {})]
        if not found:
            raise SystemExit(f"--include {other}: {path} holds no scenario of this benchmark")
        for name in found:
            parts.setdefault(name, []).append((data[name], data["per_pair"][name]))
    for name, pieces in parts.items():
        if len(pieces) == 1:
            result[name], per_pair[name] = pieces[0]
            continue
        rows = [row for _, part in pieces for row in part]
        pairs = [(r["seed_source"], r["seed_target"]) for r in rows]
        if len(set(pairs)) < len(pairs):
            raise SystemExit(f"--include: {name} has the same pair in more than one file: {pairs}")
        first = pieces[0][0]
        facts = {"command": " ; ".join(s["command"] for s, _ in pieces), "device": first["device"]}
        result[name] = {**summarize(rows, facts), "budget": first["budget"], "date": max(s["date"] for s, _ in pieces)}
        per_pair[name] = rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[0, 1, 1, 2, 2, 0], help="source/target seeds")
    parser.add_argument("--scenarios", type=int, nargs="*", default=[1, 2], choices=sorted(SCENARIOS))
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
    parser.add_argument("--spacing", default="cosine", choices=("cosine", "linear"), help="where the source points lie")
    parser.add_argument("--max-sweeps", type=int, default=100, help="coordinate-descent sweeps per transfer step")
    parser.add_argument("--minilm-steps", type=int, default=48, help="scenarios 3-4: the source's fine-tuning steps")
    parser.add_argument("--minilm-lr", type=float, default=5e-5)
    parser.add_argument("--minilm-transfer-steps", type=int, default=20, help="T of the MiniLM transfers")
    parser.add_argument("--minilm-target-steps", type=int, default=24, help="scenario 4: the target's fine-tuning")
    parser.add_argument("--stay", type=float, default=None, help="the matching's prior (default: TransferConfig's)")
    parser.add_argument(
        "--stay-at", default="auto", choices=("auto", "previous", "identity"), help="where --stay's prior sits"
    )
    parser.add_argument(
        "--warm-start", default=None, action=argparse.BooleanOptionalAction, help="default: TransferConfig's (auto)"
    )
    parser.add_argument("--pin-shared", action="store_true", help="pin the groups θ_0 and θ'_0 share (pin_shared)")
    parser.add_argument(
        "--curves", nargs="+", default=["transfer", "init", "naive"], choices=["transfer", "init", "naive"],
        help="fine-tuning runs to the source's accuracy, from these starts (the others are left out: null)",
    )  # fmt: skip
    parser.add_argument("--name", default="transfer")
    parser.add_argument("--update", action="store_true", help="keep the existing file's other scenarios")
    parser.add_argument(
        "--include", nargs="+", default=[], metavar="NAME", help="copy these result files' scenarios into this one"
    )
    opts = parser.parse_args(argv)
    torch.set_num_threads(1)
    facts = run_facts()
    pairs = list(zip(opts.pairs[::2], opts.pairs[1::2], strict=True))
    existing = RESULTS_DIR / f"{opts.name}.json"
    result = json.loads(existing.read_text()) if opts.update and existing.exists() else {}
    per_pair = result.pop("per_pair", {})
    for name in SCENARIOS.values():  # entries from before per-scenario budgets carry the file's old note
        if name in result and "budget" not in result[name]:
            result[name] |= {"budget": result.get("budget_note", ""), "date": result.get("date", "")}
    for key in ("budget_note", "command", "device", "versions", "date"):
        result.pop(key, None)
    for scenario in opts.scenarios:
        rows = run_scenario(scenario, opts, pairs)
        name = SCENARIOS[scenario]
        result[name] = {**summarize(rows, facts), "budget": budget_note(opts, scenario), "date": facts["date"]}
        per_pair[name] = rows
    include_scenarios(result, per_pair, opts.include)
    minilm = [r for name in SCENARIOS.values() if "minilm" in name for r in per_pair.get(name, [])]
    matched_all = [r for r in minilm if not r.get("pinned_groups")]  # the matching's speed: every group solved
    if matched_all:  # timed inside the scenario runs, with evaluation and whatever else ran beside them
        result["minilm_seconds_per_step_in_scenario_runs"] = statistics.mean(
            r["transfer_seconds_per_step"] for r in matched_all
        )
    result.update(speed_keys())  # the controlled timing (benchmarks/transfer_speed.py)
    result.update(
        per_pair=per_pair,
        budget_note="Each scenario's budget, command, device and date are in its own entry (scenarios may come "
        "from different runs). per_pair also lists steps_to_source_accuracy_from_naive (fine-tuning from the naive "
        "point), not a contract key.",
        **facts,
    )
    write_result(opts.name, result, TITLE, tables={name: rows for name, rows in per_pair.items()})


if __name__ == "__main__":
    main()
