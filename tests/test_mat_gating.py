"""Gating is exact: same input gradients, weight gradients only for active heads, gated heads frozen under AdamW."""

from __future__ import annotations

import copy

import pytest
import torch

from hf_efftrain.mat.config import MATConfig
from hf_efftrain.mat.engine import MATEngine
from hf_efftrain.mat.gating import gates_for_step, threshold_gates, unit_groups, update_ema
from hf_efftrain.mat.layout import build_layout
from hf_efftrain.testing import tiny_inputs, tiny_model


def _train_model(family: str, task: str = "classification"):
    model = tiny_model(family, task=task).double().train()
    model.config.hidden_dropout_prob = 0.0
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def _loss(model, inputs):
    out = model(**inputs)
    return out.logits.pow(2).sum() if out.loss is None else out.loss


def _grads(model):
    return {n: (None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()}


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_gated_backward_matches_plain_on_active_heads(family):
    plain = _train_model(family, "causal-lm" if family != "bert" else "classification")
    gated = copy.deepcopy(plain)
    inputs = tiny_inputs(plain, batch=3, seq=5)
    if family != "bert":
        inputs["labels"] = inputs["input_ids"]
    _loss(plain, inputs).backward()
    engine = MATEngine(gated, MATConfig()).attach()
    active = torch.zeros(len(engine.layout.units), dtype=torch.bool)
    active[[1, 2]] = True  # layer 0: heads 1, 2 active; layer 1: all gated
    engine.apply_gates(active)
    loss = _loss(gated, inputs)
    loss.backward()
    want, got = _grads(plain), _grads(gated)
    hooked = {f"{m.path}.{n}": (m, h) for h in engine.handles for m in [h.entry] for n in ("weight", "bias")}
    for name, g in got.items():
        if name not in hooked:
            torch.testing.assert_close(g, want[name], rtol=1e-10, atol=1e-12)  # grad_input flowed in full
            continue
        entry, handle = hooked[name]
        if entry.layer == 1 and (entry.axis == "out" or name.endswith("weight")):
            assert g is None, f"{name}: a fully gated projection must get no gradient"
            continue
        axis = handle.weight_axis if name.endswith("weight") else 0
        for piece in entry.pieces:
            if name.endswith("bias") and entry.axis == "in":
                continue
            part = g.narrow(axis, piece.start, piece.stop - piece.start)
            ref = want[name].narrow(axis, piece.start, piece.stop - piece.start)
            if bool(active[list(piece.units)].any()):
                torch.testing.assert_close(part, ref, rtol=1e-10, atol=1e-12)
            else:
                assert torch.count_nonzero(part) == 0
    engine.detach()
    assert "forward" not in gated.get_submodule(engine.layout.modules[0].path).__dict__


def test_gated_heads_stay_bit_identical_under_adamw_with_weight_decay():
    model = _train_model("llama", "causal-lm")
    inputs = tiny_inputs(model, batch=3, seq=5)
    inputs["labels"] = inputs["input_ids"]
    engine = MATEngine(model, MATConfig()).attach()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    engine.guard_optimizer(opt)
    active = torch.ones(len(engine.layout.units), dtype=torch.bool)
    active[[2, 3]] = False  # both query heads of k/v group 1 in layer 0 -> its k/v rows are gated too
    active[[4, 5, 6, 7]] = False  # all of layer 1
    arch, before = engine.layout.arch, {}
    for layer, head in [(0, 2), (0, 0), (1, 1)]:
        before[(layer, head)] = [s.weight(model).clone() for s in arch.head_slices(model, layer, head)]
    for step in range(3):
        if step == 1:
            engine.apply_gates(active)
            before = {k: [s.weight(model).clone() for s in arch.head_slices(model, *k)] for k in before}
        model(**inputs).loss.backward()
        opt.step()
        opt.zero_grad()
    for (layer, head), old in before.items():
        new = [s.weight(model) for s in arch.head_slices(model, layer, head)]
        same = all(torch.equal(a, b) for a, b in zip(old, new, strict=True))
        assert same == (not bool(active[layer * 4 + head])), (layer, head)
    k_proj = model.get_submodule(f"{arch.layer_path(model, 0)}.self_attn.k_proj").weight
    assert torch.count_nonzero(opt.state[k_proj]["exp_avg"][8:16]) > 0  # moments exist from the ungated step
    frozen = model.get_submodule(f"{arch.layer_path(model, 1)}.self_attn.q_proj").weight
    assert frozen.grad is None  # fully gated: the optimizer skipped it outright


def test_gqa_kv_head_waits_for_all_its_query_heads():
    model = tiny_model("llama", task="causal-lm")
    engine = MATEngine(model, MATConfig()).attach()
    k_handle = next(h for h in engine.handles if h.entry.path.endswith("0.self_attn.k_proj"))
    active = torch.zeros(len(engine.layout.units), dtype=torch.bool)
    active[1] = True  # query head 1 (group 0) only
    engine.apply_gates(active)
    assert k_handle.index.tolist() == list(range(8)) and k_handle.gated == [(8, 16)]
    active[1], active[3] = False, True
    engine.apply_gates(active)
    assert k_handle.gated == [(0, 8)]


def test_threshold_rules_and_warmup():
    values = torch.tensor([1.0, 2.0, 3.0, 10.0, 5.0, 5.0])
    groups = [[0, 1, 2, 3], [4, 5]]
    assert threshold_gates(values, groups, "mean", 1.0).tolist() == [False, False, False, True, True, True]
    assert threshold_gates(values, groups, "max", 0.25).tolist() == [False, False, True, True, True, True]
    assert threshold_gates(values, groups, "quantile", 0.5).tolist() == [False, False, True, True, True, True]
    assert threshold_gates(values, groups, "mean", 100.0).tolist() == [False, False, False, True, True, False]
    ema = update_ema(None, values, 0.5)
    assert torch.equal(update_ema(ema, torch.zeros(6), 0.5), values / 2)
    layout = build_layout(tiny_model("bert"), "heads+ffn")
    assert [len(g) for g in unit_groups(layout, "model")] == [2, 8]
    assert [len(g) for g in unit_groups(layout, "layer")] == [1, 1, 4, 4]
    lam = torch.arange(10.0)
    assert gates_for_step(lam, layout, 5, 10, "mean", 1.0, "model").all()
    assert not gates_for_step(lam, layout, 10, 10, "mean", 1.0, "model").all()


def test_stop_backprop_freezes_everything_below_and_counts_flops():
    plain = _train_model("bert")
    model = copy.deepcopy(plain)
    inputs = tiny_inputs(model, batch=3, seq=5)
    engine = MATEngine(model, MATConfig(granularity="heads+ffn", stop_backprop=True)).attach()
    active = torch.ones(len(engine.layout.units), dtype=torch.bool)
    active[[0, 1, 2, 3, 8]] = False  # every module of layer 0
    engine.apply_gates(active)
    assert engine.stop_layer == 1
    loss = _loss(model, inputs)
    torch.testing.assert_close(loss, _loss(plain, inputs))  # the forward is unchanged
    loss.backward()
    grads = _grads(model)
    below = [n for n in grads if ".layer.0." in n or "embeddings" in n]
    above = [n for n in grads if ".layer.1." in n]
    assert below and all(grads[n] is None for n in below)
    assert above and all(grads[n] is not None for n in above)
    assert 0.4 < engine.counter.saved_fraction < 0.6  # layer 0 of 2 identical layers skipped entirely
    engine.apply_gates(torch.ones_like(active))
    assert engine.stop_layer == 0


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_plain_loop_engine_gates_causal_lms(family):
    """The engine works without Trainer on decoders (random-projection output) and really gates."""
    model = tiny_model(family, task="causal-lm").train()
    config = MATConfig(every=1, warmup_steps=2, probe_size=2, stable_backoff=1)
    engine = MATEngine(model, config).attach()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    engine.guard_optimizer(optimizer)
    batch = tiny_inputs(model, batch=3, seq=6)
    batch["labels"] = batch["input_ids"]
    for step in range(1, 5):
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        assert engine.after_step(step, batch)
    assert [h["step"] for h in engine.history] == [1, 2, 3, 4]
    assert all(engine.history[0]["active"]) and not all(engine.history[-1]["active"])
    assert engine.counter.saved_fraction > 0
    state = engine.state_dict()
    twin = MATEngine(model, config)
    twin.load_state_dict(state)
    assert torch.equal(twin.active, engine.active) and torch.equal(twin.ema, engine.ema)
    engine.detach()


def test_bf16_autocast_gradients_match_plain_autocast():
    plain = _train_model("bert").float()
    gated = copy.deepcopy(plain)
    inputs = tiny_inputs(plain, batch=3, seq=5)
    engine = MATEngine(gated, MATConfig()).attach()
    for model in (plain, gated):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = _loss(model, inputs)
        loss.backward()
    for (name, p), q in zip(plain.named_parameters(), gated.parameters(), strict=True):
        assert q.grad.dtype == p.grad.dtype == torch.float32, name
        torch.testing.assert_close(q.grad, p.grad, rtol=2e-2, atol=1e-3)
    engine.detach()


def test_stable_gates_back_off_the_probe_interval_and_a_change_resets_it(monkeypatch):
    model = tiny_model("bert", task="classification").train()
    engine = MATEngine(model, MATConfig(every=2, warmup_steps=4, probe_size=2, stable_backoff=4))
    units = len(engine.layout.units)
    changed = torch.arange(units) % 2 == 0

    def scripted(_ema, _layout, step, *_args):  # the same gates until step 24, other gates from then on
        return changed.clone() if step >= 24 else torch.ones(units, dtype=torch.bool)

    monkeypatch.setattr("hf_efftrain.mat.engine.gates_for_step", scripted)
    batch = tiny_inputs(model, batch=2, seq=6)
    measured = [step for step in range(1, 41) if engine.after_step(step, batch)]
    # every 2 until warm-up ends at 4; stable: 4, then 8 (the cap 2×4); the change at 24 resets the interval to 2
    assert measured == [2, 4, 8, 16, 24, 26, 30, 38]
    twin = MATEngine(model, engine.config)
    twin.load_state_dict(engine.state_dict())
    assert (twin.interval, twin.next_step) == (engine.interval, engine.next_step) == (8, 46)


@pytest.mark.parametrize(("tolerance", "expected"), [(0.0, [2, 4, 6, 8, 10, 12, 14, 16]), (0.25, [2, 6, 14])])
def test_a_flip_within_the_stable_tolerance_still_backs_off(monkeypatch, tolerance, expected):
    """One borderline module flipping at every probe keeps the interval at ``every`` unless tolerated; tolerated,
    the interval doubles from the first probe after warm-up (2 → +4 → +8, the cap 4 × every)."""
    model = tiny_model("bert", task="classification").train()
    config = MATConfig(every=2, warmup_steps=2, probe_size=2, stable_backoff=4, stable_tolerance=tolerance)
    engine = MATEngine(model, config)
    units = len(engine.layout.units)
    assert units >= 4  # one flip is ≤ 25% of the modules

    calls = []

    def scripted(_ema, _layout, step, *_args):
        calls.append(step)
        gates = torch.ones(units, dtype=torch.bool)
        gates[0] = len(calls) % 2 == 0  # flips at every probe
        return gates

    monkeypatch.setattr("hf_efftrain.mat.engine.gates_for_step", scripted)
    batch = tiny_inputs(model, batch=2, seq=6)
    assert [step for step in range(1, 17) if engine.after_step(step, batch)] == expected
