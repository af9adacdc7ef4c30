"""Online and embedded CMD inside Trainer: CMD weights saved, embedded tensors really stop training, exact resume."""

from __future__ import annotations

import json

import pytest
import torch
from cmd_tiny import tiny_trainer
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, TrainerCallback

from hf_efftrain.cmd import CMDCallback
from hf_efftrain.cmd.config import CMDConfig
from hf_efftrain.cmd.embedded import backward_flops, matmul_weight_sizes
from hf_efftrain.errors import CMDConfigError, CMDNotReadyError
from hf_efftrain.testing import tiny_model

CMD = {"cmd_online": True, "cmd_every": 2, "cmd_warmup": 4, "cmd_modes": 3, "cmd_candidates": 200}
EMBED = {**CMD, "cmd_embed_every": 2, "cmd_embed_fraction": 0.3}


def _callback(trainer) -> CMDCallback:
    return next(c for c in trainer.callback_handler.callbacks if isinstance(c, CMDCallback))


def test_online_cmd_weights_are_saved_and_swapped_back(tmp_path):
    trainer = tiny_trainer(tmp_path, **CMD)
    callback = _callback(trainer)
    with pytest.raises(CMDNotReadyError):
        callback.cmd_weights(trainer.model)
    trainer.train()
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    weights = callback.cmd_weights(trainer.model)
    with callback.swapped(trainer.model) as model:
        assert torch.equal(dict(model.named_parameters())["classifier.weight"], weights["classifier.weight"])
    assert all(torch.equal(p, before[n]) for n, p in trainer.model.named_parameters())
    saved = AutoModelForSequenceClassification.from_pretrained(tmp_path / "cmd_model")
    for name, value in saved.named_parameters():
        torch.testing.assert_close(value, weights[name])
    assert any(not torch.equal(weights[n], before[n]) for n in weights)
    assert json.loads((tmp_path / "cmd_report.json").read_text())["snapshots"] == 12


class _Spy(TrainerCallback):
    """Records, per step, the parameters that received a gradient and the embedded values before the step."""

    def __init__(self):
        self.with_grad: list[set[str]] = []

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.with_grad.append({n for n, p in kwargs["model"].named_parameters() if p.grad is not None})


def test_embedded_tensors_get_no_gradient_no_optimizer_state_and_follow_a_r_plus_b(tmp_path):
    spy = _Spy()
    trainer = tiny_trainer(tmp_path, callbacks=[spy], **EMBED)
    trainer.train()
    callback = _callback(trainer)
    embedded = set(callback.embedding.a)
    report = callback.report(trainer.model)
    assert 0.2 < report["embedded_fraction"] <= 0.5 and report["linear_weight_grad_saved_fraction"] > 0
    params = dict(trainer.model.named_parameters())
    assert all(not params[n].requires_grad for n in embedded)
    assert all(params[n] not in trainer.optimizer.state for n in embedded)
    first = callback.history[0]["step"]
    assert not (spy.with_grad[-1] & embedded) and spy.with_grad[first - 1] >= embedded
    r = callback.online.reference_values(params)
    weights = callback.cmd_weights(trainer.model)  # the CMD weights of an embedded tensor are its frozen a·r + b
    assert all(torch.equal(weights[n], params[n]) for n in embedded)
    for name in embedded:
        expected = callback.embedding.a[name].double() * r[callback.online.labels[name].long()]
        torch.testing.assert_close(params[name].double(), expected + callback.embedding.b[name].double())


class _Kill(TrainerCallback):
    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == 12:
            raise KeyboardInterrupt("simulated kill")


@pytest.mark.slow
def test_resume_after_a_kill_continues_exactly(tmp_path):
    whole = tiny_trainer(tmp_path / "whole", save_strategy="steps", save_steps=12, **EMBED)
    whole.train()
    killed = tiny_trainer(tmp_path / "cut", callbacks=[_Kill()], save_strategy="steps", save_steps=12, **EMBED)
    with pytest.raises(KeyboardInterrupt):
        killed.train()
    assert json.loads((tmp_path / "cut/checkpoint-12/cmd_state.json").read_text())["embedded"]
    resumed = tiny_trainer(tmp_path / "cut", save_strategy="steps", save_steps=12, **EMBED)
    resumed.train(resume_from_checkpoint=True)
    losses = lambda t: [h["loss"] for h in t.state.log_history if "loss" in h and h["step"] > 12]  # noqa: E731
    assert losses(resumed) == losses(whole) and len(losses(whole)) == 12
    assert _callback(resumed).embedding.a.keys() == _callback(whole).embedding.a.keys()
    for name, value in load_file(str(tmp_path / "whole/cmd_model/model.safetensors")).items():
        torch.testing.assert_close(load_file(str(tmp_path / "cut/cmd_model/model.safetensors"))[name], value)


def test_embedded_linear_weights_cost_no_backward_matmul(tmp_path):
    """Measured with torch's FLOP counter: the backward pass skips exactly 2·rows·in·out per embedded Linear weight
    (rows: the inputs it saw, batch × sequence, or batch alone for the pooler and classifier)."""
    trainer = tiny_trainer(tmp_path, **EMBED)
    trainer.train()
    model, embedded = trainer.model, set(_callback(trainer).embedding.a)
    batch = {"input_ids": torch.randint(1, 96, (4, 8)), "labels": torch.tensor([0, 1, 0, 1])}
    linear = {f"{path}.weight": m for path, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert embedded & set(linear)  # the run embedded at least one Linear weight
    rows: dict[str, int] = {}
    hooks = [
        m.register_forward_hook(lambda m, x, y, n=n: rows.__setitem__(n, x[0].numel() // m.in_features))
        for n, m in linear.items()
    ]
    frozen_flops = backward_flops(model, batch)
    for hook in hooks:
        hook.remove()
    params = dict(model.named_parameters())
    for name in embedded:
        params[name].requires_grad_(True)
    all_flops = backward_flops(model, batch)
    expected = sum(2 * rows[n] * linear[n].in_features * linear[n].out_features for n in embedded if n in linear)
    assert all_flops - frozen_flops == expected > 0


def test_input_first_embeds_a_prefix_and_drops_the_input_gradients_below_it(tmp_path):
    """``input_first`` grows a prefix (embeddings, then layer 0) up to ``embed_max`` of the matrix weights, keeps
    the references out of it, and its backward pass saves more than the weight gradients of the embedded Linears."""
    trainer = tiny_trainer(tmp_path, **EMBED, cmd_embed_order="input_first", cmd_embed_max=0.5)
    trainer.train()
    callback, model = _callback(trainer), trainer.model
    names = [n for n, _ in model.named_parameters()]
    embedded = set(callback.embedding.a)
    assert embedded == {n for n in names if n.startswith(("bert.embeddings.", "bert.encoder.layer.0."))}
    assert len(callback.history) > 1 and callback.history[-1]["newly_embedded"] == 0  # grew, then hit embed_max
    assert not {name for name, _ in callback.online.reference_ids} & embedded
    batch = {"input_ids": torch.randint(1, 96, (4, 8)), "labels": torch.tensor([0, 1, 0, 1])}
    frozen_flops = backward_flops(model, batch)
    for param in model.parameters():
        param.requires_grad_(True)
    all_flops = backward_flops(model, batch)
    sizes = matmul_weight_sizes(model)
    weight_gradients_only = sum(2 * 4 * 8 * sizes[name] for name in embedded if name in sizes)  # 4 × 8 tokens
    assert all_flops - frozen_flops > 1.5 * weight_gradients_only  # layer 0's input gradients are gone too


def test_matrix_weights_count_conv1d_and_a_tied_output_head_under_the_embedding_name():
    model = tiny_model("llama", task="causal-lm", tie_word_embeddings=True)
    sizes = matmul_weight_sizes(model)
    assert set(sizes) <= {n for n, _ in model.named_parameters()}
    assert "model.embed_tokens.weight" in sizes and "model.layers.0.self_attn.q_proj.weight" in sizes
    gpt2 = matmul_weight_sizes(tiny_model("gpt2", task="causal-lm"))  # GPT-2's Conv1D projections count too
    assert "transformer.h.0.attn.c_attn.weight" in gpt2 and "transformer.wte.weight" in gpt2


def test_an_unknown_embedding_order_is_refused_naming_the_flag():
    with pytest.raises(CMDConfigError, match="cmd_embed_order"):
        CMDConfig(embed_order="random").validate()
