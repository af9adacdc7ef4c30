"""What the growth study trains: its sizes, its data (a BPE vocabulary of our own), and every model it builds.

A LAG study needs a base that *we* pre-trained (so growth starts from a known, converged point) and enough
candidate runs to measure seed noise, on two single-threaded CPU cores. Everything that decides a number is
in :class:`Study`, which is saved with the result and hashed into the work folder's name, so records of a
different configuration are never merged. Example::

    study = Study()
    prepare_data(study, work)                      # once, in the parent process
    train, held_out = load_data(work)              # in every job
    model = CANDIDATES["copy_all"](study, bases, seed=0)
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from datasets import Dataset, DatasetDict, disable_progress_bars, load_from_disk
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel, PreTrainedTokenizerFast, set_seed

from hf_efftrain.data import load_wikipedia
from hf_efftrain.growth import (
    copy_all,
    fuse_width,
    grow_depth,
    grow_width,
    interleave,
    masked_depth,
    masked_width,
    middle,
    overlap,
    slices,
    top_k,
)
from hf_efftrain.growth.assemble import build_model, derive_config
from hf_efftrain.tasks import causal_lm_blocks

EOS = "<eos>"


@dataclass(frozen=True)
class Study:
    """Every size and knob of the study; the defaults are the full protocol (about an hour on 2 cores)."""

    vocab: int = 2048  # a small BPE vocabulary keeps the LM head from dominating a 64-wide model's compute
    block: int = 64
    batch: int = 16
    hidden: int = 64
    heads: int = 4  # head_dim 16
    ffn: int = 192
    base_layers: int = 6
    target_layers: int = 12
    base_max_steps: int = 1200  # cap; the base stops earlier when its training loss flattens
    base_min_steps: int = 500
    base_plateau_window: int = 100
    base_plateau_tolerance: float = 0.01
    base_eval_every: int = 100
    steps: int = 400  # training steps after growth, for every candidate and for scratch
    lr: float = 2e-3
    warmup: float = 0.05  # fraction of each run
    warmup_after_growth: float | None = None  # the candidates' warm-up (steps, or a fraction < 1); None = warmup
    lag: int = 20  # the headline lag: 5% of the run
    lags: tuple[int, ...] = (1, 2, 5, 10, 20, 40)  # the Spearman-against-k curve (40 = 10%)
    eval_every: int = 50
    eval_blocks: int = 384  # 384 x 64 = 24,576 held-out tokens, spread over all 10 held-out articles
    ramp: int = 40  # masked growth: mask 0 -> 1 over the first 10% of the run
    width_hidden: int = 96  # Net2Net: 6 layers x 96 wide ~ the non-embedding parameters of 12 x 64
    width_noise: float = 0.02  # breaks the symmetry of Net2Net copies
    seeds: tuple[int, ...] = (0, 1, 2)
    candidates: tuple[str, ...] = ()  # empty = all of CANDIDATES
    gradual_start: int = 3
    gradual_grow_by: int = 3
    gradual_lag: int = 10
    gradual_seeds: tuple[int, ...] = (0,)

    def names(self) -> list[str]:
        """The growth candidates of this study (scratch is never one of them)."""
        return list(self.candidates or CANDIDATES)

    def needs_second_base(self) -> bool:
        """Fusion candidates combine two independently pre-trained bases."""
        return any(name in TWO_BASES for name in self.names())

    def key(self) -> str:
        """A short hash of every setting (names the work folder)."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]

    def eval_steps(self) -> list[int]:
        """Steps after growth at which the held-out loss is measured (step 0 is always measured too)."""
        points = {*self.lags, self.lag, self.steps, *range(self.eval_every, self.steps + 1, self.eval_every)}
        return sorted(p for p in points if 1 <= p <= self.steps)


SMOKE = Study(
    vocab=512, block=32, batch=4, hidden=32, heads=2, ffn=64, base_max_steps=30, base_min_steps=10,
    base_plateau_window=5, base_eval_every=10, steps=18, lag=2, lags=(1, 2, 4), eval_every=6, eval_blocks=16, ramp=4,
    width_hidden=48, gradual_start=6, gradual_grow_by=3, gradual_lag=2,
)  # fmt: skip
"""A couple of minutes on one core: every job kind and every candidate, at toy sizes."""


def smoke(study: Study) -> Study:
    """The smoke preset, keeping the candidate choice of ``study``."""
    return replace(SMOKE, candidates=study.candidates)


# ---- data ---------------------------------------------------------------------------------------------------


def _train_tokenizer(texts: list[str], vocab: int) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    os.environ.setdefault("RAYON_NUM_THREADS", "1")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tokenizer.train_from_iterator(
        texts, trainers.BpeTrainer(vocab_size=vocab, special_tokens=[EOS], initial_alphabet=alphabet)
    )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS, pad_token=EOS)


def prepare_data(study: Study, work: Path) -> dict:
    """Train the vocabulary on the training articles, cut train/held-out blocks, save both; return their sizes.

    Done once (the jobs only read ``work/data``), so every job sees the same tokens. The evaluation blocks are
    spread evenly over all held-out articles, not taken from the first few.
    """
    folder = work / "data"
    if (folder / "sizes.json").is_file():
        return json.loads((folder / "sizes.json").read_text())
    disable_progress_bars()
    splits = load_wikipedia(seed=0)
    tokenizer = _train_tokenizer(list(splits["train"]["text"]), study.vocab)
    blocks = causal_lm_blocks(splits, tokenizer, study.block)
    available = len(blocks["validation"])
    if available < study.eval_blocks:
        raise SystemExit(f"only {available} held-out blocks of {study.block} tokens: lower --eval-blocks")
    picks = [i * available // study.eval_blocks for i in range(study.eval_blocks)]
    held_out = blocks["validation"].select(picks)
    DatasetDict(train=blocks["train"], held_out=held_out).save_to_disk(str(folder / "blocks"))
    tokenizer.save_pretrained(str(folder / "tokenizer"))
    sizes = _data_sizes(splits["validation"], tokenizer, len(blocks["train"]), picks, study)
    (folder / "sizes.json").write_text(json.dumps(sizes))
    return sizes


def _data_sizes(validation: Dataset, tokenizer, train_blocks: int, picks: list[int], study: Study) -> dict:
    lengths = [len(ids) + 1 for ids in tokenizer(list(validation["text"]))["input_ids"]]  # + the separator
    ends = list(itertools.accumulate(lengths))
    covered = {bisect.bisect_right(ends, i * study.block) for i in picks}
    return {
        "vocabulary": study.vocab,
        "train_blocks": train_blocks,
        "train_tokens": train_blocks * study.block,
        "held_out_articles": len(lengths),
        "held_out_tokens_available": sum(lengths),
        "eval_blocks": study.eval_blocks,
        "eval_tokens": study.eval_blocks * study.block,
        "eval_articles_covered": len(covered),
    }


def load_data(work: Path) -> tuple[Dataset, Dataset]:
    """``(train blocks, fixed held-out blocks)`` written by :func:`prepare_data`."""
    disable_progress_bars()
    blocks = load_from_disk(str(work / "data" / "blocks"))
    return blocks["train"], blocks["held_out"]


# ---- models -------------------------------------------------------------------------------------------------


def llama_config(study: Study, layers: int) -> LlamaConfig:
    """The study's Llama shape at ``layers`` layers (full attention heads, tied embeddings, RMSNorm)."""
    return LlamaConfig(
        vocab_size=study.vocab, hidden_size=study.hidden, intermediate_size=study.ffn, num_hidden_layers=layers,
        num_attention_heads=study.heads, num_key_value_heads=study.heads, head_dim=study.hidden // study.heads,
        max_position_embeddings=study.block, tie_word_embeddings=True, bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )  # fmt: skip


def fresh_model(study: Study, layers: int, seed: int) -> LlamaForCausalLM:
    """A randomly initialized model of the study's width (its initialization depends only on ``seed``)."""
    set_seed(seed)
    return LlamaForCausalLM(llama_config(study, layers))


def train_flops_per_token(model: PreTrainedModel) -> float:
    """About 6 x the parameters a token goes through (an untied input embedding is a lookup: not counted)."""
    params = model.num_parameters()
    if not model.config.tie_word_embeddings:
        params -= model.get_input_embeddings().weight.numel()
    return 6.0 * params


Bases = dict[str, PreTrainedModel]
Builder = Callable[[Study, Bases, int], PreTrainedModel]


def _depth(plan: Callable[[Study], list]) -> Builder:
    return lambda study, bases, seed: grow_depth([bases["a"]], plan(study), seed=seed)


def _masked(study: Study, bases: Bases, seed: int) -> PreTrainedModel:
    set_seed(seed)  # the fresh layers' initialization
    plan = copy_all(study.base_layers, study.target_layers)
    return masked_depth(bases["a"], plan, fresh=True, ramp_steps=study.ramp, seed=seed)


def _width(study: Study, bases: Bases, seed: int, noise: float | None = None) -> PreTrainedModel:
    head_dim = study.hidden // study.heads
    heads, ffn = study.width_hidden // head_dim, study.ffn * study.width_hidden // study.hidden
    noise = study.width_noise if noise is None else noise
    return grow_width(bases["a"], study.width_hidden, ffn, heads, heads, noise=noise, seed=seed)


def _masked_copies(study: Study, bases: Bases, seed: int) -> PreTrainedModel:
    plan = copy_all(study.base_layers, study.target_layers)
    return masked_depth(bases["a"], plan, fresh=False, ramp_steps=study.ramp, seed=seed)


def _masked_width(study: Study, bases: Bases, seed: int) -> PreTrainedModel:
    set_seed(seed)  # the fresh units' initialization
    heads, ffn = 2 * study.heads, 2 * study.ffn  # 6 layers, ~ the parameters of 12 x 64
    return masked_width(bases["a"], ffn, heads, heads, ramp_steps=study.ramp, seed=seed)


def _passthrough(study: Study, bases: Bases, seed: int) -> PreTrainedModel:
    n = study.base_layers
    return grow_depth([bases["a"], bases["b"]], slices([(0, 0, n), (1, 0, n)]), seed=seed)


CANDIDATES: dict[str, Builder] = {
    "copy_all": _depth(lambda s: copy_all(s.base_layers, s.target_layers)),
    "interleave": _depth(lambda s: interleave(s.base_layers, s.target_layers)),
    "top_k(k=2)": _depth(lambda s: top_k(s.base_layers, s.target_layers, 2)),
    "middle(block=2)": _depth(lambda s: middle(s.base_layers, s.target_layers, 2)),
    "overlap(m=2,copies=3)": _depth(lambda s: overlap(s.base_layers, 2, copies=3)),
    "msg(copy_all,fresh)": _masked,
    "net2net_width": _width,
    "deep_fusion(a,b)": lambda study, bases, seed: fuse_width(bases["a"], bases["b"], seed=seed),
    "passthrough(a|b)": _passthrough,
}
"""Every growth operator of the library, applied to the pre-trained base(s) ``a`` (and ``b`` for fusion)."""

VARIANTS: dict[str, Builder] = {
    "net2net_width(noise=0)": lambda study, bases, seed: _width(study, bases, seed, noise=0.0),
    "net2net_width(noise=0.1)": lambda study, bases, seed: _width(study, bases, seed, noise=0.1),
    "msg(copy_all,copies)": _masked_copies,
    "msg_width(heads,ffn x2)": _masked_width,
}
"""Settings of the same operators a user also chooses between, several exact at step 0 like Net2Net and MSG:
the initial loss ties them, so only training can rank them (the case LAG is for). Not in the study's default."""


def _untied(study: Study, bases: Bases, seed: int) -> PreTrainedModel:
    """Base a with its output embedding a separate copy of the input one, as Net2Net's growth of the hidden size
    leaves it (the same function, more parameters)."""
    base = bases["a"]
    state = base.state_dict() | {"lm_head.weight": base.get_input_embeddings().weight}
    return build_model(base, derive_config(base.config, tie_word_embeddings=False), state, seed=seed)


REFERENCES: dict[str, Builder] = {
    "no_growth(base a)": lambda study, bases, seed: bases["a"],
    "no_growth(base a, untied)": _untied,
}
"""Not growth: the base trained on in its own shape, what a user who does not grow gets for the same steps; and
the same with its embeddings untied, which Net2Net width growth also does."""

BUILDERS: dict[str, Builder] = {**CANDIDATES, **VARIANTS, **REFERENCES}
"""Every model a growth job can build, by name."""

TWO_BASES = ("deep_fusion(a,b)", "passthrough(a|b)")
WIDER = (
    "net2net_width",
    "deep_fusion(a,b)",
    "net2net_width(noise=0)",
    "net2net_width(noise=0.1)",
    "msg_width(heads,ffn x2)",
)
"""Candidates that grow width, not depth: the rest stack layers into the same 12-layer shape."""

DESCRIPTIONS = {
    "copy_all": "G_stack: layers 0..L-1 twice",
    "interleave": "each layer twice in place (112233)",
    "top_k(k=2)": "gradual-stacking plan: all layers, then the top 2 repeated",
    "middle(block=2)": "MIDAS: the middle 2 layers repeated in place",
    "overlap(m=2,copies=3)": "SOLAR depth up-scaling: [0, L-2) then twice [2, L)",
    "msg(copy_all,fresh)": "masked structural growth: L fresh layers behind a mask ramped 0->1 (exact at step 0)",
    "net2net_width": "Net2Net width growth of every axis by 1.5x (same depth, ~ the parameters of the deep ones)",
    "deep_fusion(a,b)": "Deep Fusion of bases a and b: double width, block-diagonal, output = average",
    "passthrough(a|b)": "mergekit passthrough: all layers of base a, then all layers of base b",
    "net2net_width(noise=0)": "Net2Net width 1.5x with exact copies (the library's default): copies stay identical",
    "net2net_width(noise=0.1)": "Net2Net width 1.5x with the copies' read weights split unequally by 10%",
    "msg(copy_all,copies)": "masked structural growth: copies of layers 0..L-1 behind a mask ramped 0->1",
    "msg_width(heads,ffn x2)": "masked width growth: heads and MLP units doubled (fresh, masked), hidden size kept",
    "no_growth(base a)": "no growth: base a (6 layers) trained on in its own shape",
    "no_growth(base a, untied)": "no growth, base a's output embedding untied from the input one (as Net2Net does)",
}
