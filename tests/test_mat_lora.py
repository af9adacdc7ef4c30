"""MAT over PEFT LoRA: a head owns rows of lora_B (q/k/v) and columns of lora_A (o); kernels are exact, gated slices
stay bit-identical (AdamW state included), the frozen base computes no weight gradient, and what cannot be sliced
is refused when the trainer is built."""

from __future__ import annotations

import json

import pytest
import torch
from datasets import Dataset
from transformers import default_data_collator

from hf_efftrain import EfficientTrainer, EfficientTrainingArguments
from hf_efftrain.errors import MATConfigError
from hf_efftrain.mat import MATConfig, MATEngine
from hf_efftrain.mat.layout import build_layout
from hf_efftrain.mat.ntk import unit_kernels
from hf_efftrain.mat.reference import reference_kernels
from hf_efftrain.testing import VOCAB, tiny_inputs, tiny_model

peft = pytest.importorskip("peft")

ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
MLP = ["gate_proj", "up_proj", "down_proj"]


def lora(family: str = "llama", targets=ATTENTION, random_b: bool = True, **extra):
    """A tiny GQA decoder (4 query, 2 k/v heads) with LoRA; ``random_b`` so that every factor has a gradient."""
    base = tiny_model(family, task="causal-lm", seed=0, hidden_size=32, attn_implementation="eager")
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=not random_b, **extra)
    return peft.get_peft_model(base, config)


@pytest.mark.parametrize(
    "targets,granularity,gqa_unit",
    [
        (ATTENTION, "heads", "query_head"),
        (ATTENTION, "heads", "kv_group"),
        (ATTENTION + MLP, "heads+ffn", "query_head"),
    ],
)
def test_lora_kernels_match_bruteforce_over_the_trainable_slices(targets, granularity, gqa_unit):
    model = lora(targets=targets).double()
    layout = build_layout(model, granularity, gqa_unit)
    assert all(".lora_" in entry.path for entry in layout.modules)  # never the frozen base weights
    inputs = tiny_inputs(model, batch=3, seq=5)
    exact = reference_kernels(model, layout, inputs, seed=2)
    fast = unit_kernels(model, layout, inputs, seed=2)
    assert exact.abs().amax() > 0
    assert ((fast - exact).abs().amax() / exact.abs().amax()) < 1e-6


def test_heads_own_lora_b_rows_of_q_k_v_and_lora_a_columns_of_o():
    layout = build_layout(lora(), "heads")
    by_name = {entry.path.split(".")[-3]: entry for entry in layout.modules if ".layers.0." in entry.path}
    assert [(p.start, p.stop, p.units) for p in by_name["q_proj"].pieces] == [
        (0, 8, (0,)),
        (8, 16, (1,)),
        (16, 24, (2,)),
        (24, 32, (3,)),
    ]
    assert [p.units for p in by_name["k_proj"].pieces] == [(0, 1), (2, 3)]  # GQA: a k/v row serves two heads
    assert by_name["o_proj"].axis == "in" and by_name["o_proj"].path.endswith("lora_A.default")
    assert by_name["q_proj"].axis == "out" and by_name["q_proj"].path.endswith("lora_B.default")


def _lm_data(rows: int = 16, length: int = 8) -> Dataset:
    ids = torch.randint(3, VOCAB, (rows, length), generator=torch.Generator().manual_seed(0)).tolist()
    return Dataset.from_dict({"input_ids": ids, "labels": ids})


def test_gated_lora_slices_and_their_adam_state_stay_bit_identical(tmp_path, one_thread):
    model = lora()
    engine = MATEngine(model, MATConfig(every=1, warmup_steps=0, probe_size=2)).attach()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    engine.guard_optimizer(optimizer)
    batch = {"input_ids": torch.tensor(_lm_data(4)["input_ids"])}
    batch["labels"] = batch["input_ids"]
    base = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    active = torch.ones(len(engine.layout.units), dtype=torch.bool)
    active[1] = active[2] = False  # heads 1 and 2 of layer 0: k/v group 0 still has head 0, group 1 has head 3
    engine.apply_gates(active)
    q_b = model.get_submodule("base_model.model.model.layers.0.self_attn.q_proj.lora_B.default").weight
    o_a = model.get_submodule("base_model.model.model.layers.0.self_attn.o_proj.lora_A.default").weight
    before = q_b.detach().clone(), o_a.detach().clone()
    for _ in range(3):
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert torch.equal(q_b[8:24], before[0][8:24]) and not torch.equal(q_b[:8], before[0][:8])
    assert torch.equal(o_a[:, 8:24], before[1][:, 8:24]) and not torch.equal(o_a[:, :8], before[1][:, :8])
    assert torch.equal(optimizer.state[q_b]["exp_avg"][8:24], torch.zeros(16, 4))
    assert all(torch.equal(p, base[n]) for n, p in model.named_parameters() if n in base)
    assert engine.counter.saved_fraction > 0
    engine.detach()


def test_frozen_base_weights_compute_no_weight_gradient():
    """The FLOP counter sees only adapter work: gating every head leaves just the input gradients."""
    model = lora()
    engine = MATEngine(model, MATConfig()).attach()
    model.train()
    batch = tiny_inputs(model, batch=2, seq=6)
    model(**batch, labels=batch["input_ids"]).loss.backward()
    full = engine.counter.full
    adapter_dw = sum(2.0 * 12 * e.module.weight.numel() for e in engine.layout.modules)  # 2·N·O·I with N = 2×6 tokens
    assert engine.counter.done == full  # nothing gated yet
    assert full == pytest.approx(adapter_dw * 2)  # dW of the factors + their input gradients, no base dW
    engine.detach()


def test_efficient_trainer_runs_mat_on_lora_and_writes_the_history(tmp_path, one_thread):
    args = EfficientTrainingArguments(
        output_dir=str(tmp_path), max_steps=6, per_device_train_batch_size=4, learning_rate=1e-2, report_to="none",
        save_strategy="no", disable_tqdm=True, use_cpu=True, mat=True, mat_every=2, mat_warmup_steps=2,
        mat_probe_size=2, mat_gqa_unit="kv_group",
    )  # fmt: skip
    trainer = EfficientTrainer(model=lora(), args=args, train_dataset=_lm_data(), data_collator=default_data_collator)
    trainer.train()
    history = json.loads((tmp_path / "mat_history.json").read_text())
    assert history["units"][:2] == ["L0.G0", "L0.G1"] and len(history["history"]) >= 2


@pytest.mark.parametrize(
    "make,granularity,match",
    [
        (lambda: lora(targets=MLP), "heads", "nothing to train"),
        (lambda: lora(targets=ATTENTION), "heads+ffn", "FFN blocks"),
        (lambda: lora(use_dora=True), "heads", "DoRA"),
        (
            lambda: peft.get_peft_model(
                tiny_model("llama", task="causal-lm", hidden_size=32),
                peft.IA3Config(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"]),
            ),
            "heads",
            "LoRA adapters only",
        ),
    ],
)
def test_what_mat_cannot_slice_is_refused_when_the_trainer_is_built(make, granularity, match, tmp_path):
    args = EfficientTrainingArguments(
        output_dir=str(tmp_path), max_steps=2, report_to="none", use_cpu=True, mat=True, mat_granularity=granularity
    )
    with pytest.raises(MATConfigError, match=match):
        EfficientTrainer(model=make(), args=args, train_dataset=_lm_data(), data_collator=default_data_collator)
