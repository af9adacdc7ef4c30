"""LoRA on decoder LLMs with GQA (Llama, Qwen2, Mistral): alone, with MAT, with TWA, with post-hoc CMD.

Tiny random configs (2 layers, hidden 32, 4 query and 2 key/value heads) with a rank-4 adapter on q/k/v/o;
each training run takes about a second.
"""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from transformers import default_data_collator

from hf_efftrain import EfficientTrainer, EfficientTrainingArguments
from hf_efftrain.adapters import ADAPTER_WEIGHTS, save_adapter, saved_name
from hf_efftrain.causal_lm import add_lora, attention_targets
from hf_efftrain.cmd import CMDCallback, CMDResult
from hf_efftrain.errors import MATConfigError, TrajectoryMismatchError
from hf_efftrain.mat import MATCallback
from hf_efftrain.testing import VOCAB, tiny_model
from hf_efftrain.trajectory import Trajectory
from hf_efftrain.twa import TrainableView, TWACallback

peft = pytest.importorskip("peft")

FAMILIES = ("llama", "qwen2", "mistral")


def base_lm(family: str):
    return tiny_model(family, task="causal-lm", seed=0, hidden_size=32)


def lora_lm(family: str):
    return add_lora(base_lm(family), r=4, alpha=8).train()


def lm_data(rows: int = 32, length: int = 12) -> Dataset:
    ids = torch.randint(3, VOCAB, (rows, length), generator=torch.Generator().manual_seed(0)).tolist()
    return Dataset.from_dict({"input_ids": ids, "labels": ids})


def lm_trainer(model, out, **knobs) -> EfficientTrainer:
    settings = {"max_steps": 8, "per_device_train_batch_size": 4, "learning_rate": 1e-2, "logging_steps": 1}
    settings.update(report_to="none", save_strategy="no", disable_tqdm=True, use_cpu=True, seed=0)
    args = EfficientTrainingArguments(output_dir=str(out), **{**settings, **knobs})
    return EfficientTrainer(model=model, args=args, train_dataset=lm_data(), data_collator=default_data_collator)


def frozen_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}


def logits(model) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor(lm_data(2)["input_ids"])).logits


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_on_q_k_v_o_trains_only_the_adapter(family, tmp_path, one_thread):
    model = lora_lm(family)
    assert attention_targets(model) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) == 2 * 4 * 2 and all("lora_" in n for n in trainable)  # A and B of 4 projections × 2 layers
    frozen = frozen_state(model)
    lm_trainer(model, tmp_path).train()
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if not p.requires_grad)
    assert all(p.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n)  # B starts at zero


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_twa_basis_holds_the_adapter_only_and_saves_a_loadable_adapter(family, tmp_path, one_thread):
    model = lora_lm(family)
    frozen = frozen_state(model)
    adapter_size = sum(p.numel() for p in model.parameters() if p.requires_grad)
    trainer = lm_trainer(model, tmp_path / "run", twa=True, twa_start=0.5, twa_every=1, twa_steps=2, twa_lr=0.5)
    trainer.train()
    twa = next(c for c in trainer.callback_handler.callbacks if isinstance(c, TWACallback))
    assert twa.phase == "done" and twa.view.dim == adapter_size < sum(p.numel() for p in model.parameters()) / 5
    assert twa.report["basis_memory_mb"] == pytest.approx(twa.report["basis_rank"] * adapter_size * 4 / 2**20)
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if not p.requires_grad)
    trainer.save_model(str(tmp_path / "adapter"))
    loaded = peft.PeftModel.from_pretrained(base_lm(family), str(tmp_path / "adapter"))
    assert torch.allclose(logits(loaded), logits(model), atol=1e-6)  # the TWA solution, not the last step
    assert (tmp_path / "adapter" / ADAPTER_WEIGHTS).stat().st_size < adapter_size * 4 + 10_000


def _fit_and_reconstruct(run_cli, trajectory, out, step: int, extra: list[str] = ()) -> CMDResult:
    code, _, err = run_cli(["cmd", "fit", str(trajectory), str(out / "cmd"), "--modes", "2", "--no-plots", *extra])
    assert code == 0, err
    code, _, err = run_cli(["cmd", "reconstruct", str(out / "cmd"), "--step", str(step), "--save", str(out / "rec")])
    assert code == 0, err
    return CMDResult.load(out / "cmd")


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_cmd_round_trip_from_snapshots_gives_a_loadable_adapter(family, tmp_path, run_cli, one_thread):
    model = lora_lm(family)
    trainer = lm_trainer(model, tmp_path, snapshot_every=1)
    trainer.train()
    trainer.save_model()  # output_dir: the adapter folder the fit records as its base
    result = _fit_and_reconstruct(run_cli, tmp_path / "snapshots", tmp_path, step=6)
    assert result.meta["base_model"] == str(tmp_path.resolve())
    assert result.stats["relative_reconstruction_error"] < 0.1  # measured ~0.03 with 2 modes
    loaded = peft.PeftModel.from_pretrained(base_lm(family), str(tmp_path / "rec"))
    want = {saved_name(n): v for n, v in result.reconstruct(6).items()}
    got = {saved_name(n): p for n, p in loaded.named_parameters() if "lora_" in n}
    assert set(got) == set(want) and all(torch.allclose(got[n], want[n].float()) for n in want)
    real = Trajectory(tmp_path / "snapshots").load(6)
    error = sum((want[saved_name(n)] - v).norm() ** 2 for n, v in real.items()) ** 0.5
    assert error < 0.1 * sum(v.norm() ** 2 for v in real.values()) ** 0.5  # close to the real step-6 adapter


def test_lora_cmd_round_trip_from_trainer_checkpoints(tmp_path, run_cli, one_thread):
    lm_trainer(lora_lm("llama"), tmp_path, save_strategy="steps", save_steps=2).train()
    result = _fit_and_reconstruct(run_cli, tmp_path, tmp_path / "out", step=5)
    assert result.meta["base_model"] == str((tmp_path / "checkpoint-8").resolve())  # its adapter_config.json
    loaded = peft.PeftModel.from_pretrained(base_lm("llama"), str(tmp_path / "out" / "rec"))
    want = result.reconstruct(5)
    got = {n: p for n, p in loaded.named_parameters() if "lora_" in n}
    assert all(torch.allclose(got[n.replace(".weight", ".default.weight")], v) for n, v in want.items())


def test_online_and_embedded_cmd_track_the_adapter_only_and_save_a_loadable_adapter(tmp_path, one_thread):
    model = lora_lm("llama")
    frozen = frozen_state(model)
    knobs = {"cmd_online": True, "cmd_every": 1, "cmd_warmup": 3, "cmd_modes": 2, "cmd_candidates": 20}
    trainer = lm_trainer(model, tmp_path / "run", max_steps=10, **knobs, cmd_forgetting=0.9, cmd_embed_every=2)
    trainer.train()
    cmd = next(c for c in trainer.callback_handler.callbacks if isinstance(c, CMDCallback))
    adapter = {n for n, p in model.named_parameters() if p.requires_grad} | set(cmd.embedding.a)
    assert set(cmd.online.labels) == adapter and all("lora_" in n for n in adapter)
    assert cmd.embedding.a, "the run embedded no adapter tensor"
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    loaded = peft.PeftModel.from_pretrained(base_lm("llama"), str(tmp_path / "run" / "cmd_model"))
    with cmd.swapped(model):
        assert torch.allclose(logits(loaded), logits(model), atol=1e-6)


def test_input_first_embeds_the_lowest_adapters_first(tmp_path, one_thread):
    """Over LoRA, the prefix is the adapters nearest the input; the frozen base weights are not in the budget."""
    model = lora_lm("llama")
    knobs = {"cmd_online": True, "cmd_every": 1, "cmd_warmup": 3, "cmd_modes": 2, "cmd_candidates": 20}
    trainer = lm_trainer(
        model, tmp_path / "run", max_steps=10, **knobs, cmd_embed_every=2, cmd_embed_order="input_first"
    )
    trainer.train()
    cmd = next(c for c in trainer.callback_handler.callbacks if isinstance(c, CMDCallback))
    adapter = [n for n, _ in model.named_parameters() if n in cmd.online.labels]  # model order
    embedded = set(cmd.embedding.a)
    assert embedded and embedded == set(adapter[: len(embedded)])  # a prefix of the adapters
    assert not {name for name, _ in cmd.online.reference_ids} & embedded


def test_adapter_export_refuses_tensors_of_another_adapter(tmp_path):
    model = lora_lm("llama")
    model.save_pretrained(str(tmp_path / "adapter"))
    weights = {"base_model.model.lm_head.lora_A.default.weight": torch.zeros(4, 32)}
    with pytest.raises(TrajectoryMismatchError, match="not in the adapter"):
        save_adapter(weights, like=tmp_path / "adapter", folder=tmp_path / "out", command="cmd reconstruct")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("family", FAMILIES)
def test_mat_gates_lora_heads_and_leaves_the_base_untouched(family, tmp_path, one_thread):
    model = lora_lm(family)
    frozen = frozen_state(model)
    trainer = lm_trainer(model, tmp_path, mat=True, mat_every=2, mat_warmup_steps=2, mat_probe_size=2)
    trainer.train()
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    engine = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, MATCallback)).engine
    assert engine.layout.modules and all(".lora_" in e.path for e in engine.layout.modules)
    logs = [h for h in trainer.state.log_history if "mat/active_fraction" in h]
    assert logs and logs[-1]["mat/active_fraction"] < 1.0  # gating happened on the adapter's heads


def test_mat_with_lora_on_no_attention_projection_is_refused_when_the_trainer_is_built(tmp_path):
    with pytest.raises(MATConfigError, match="nothing to train"):
        lm_trainer(add_lora(base_lm("qwen2"), r=4, targets="gate_proj,up_proj"), tmp_path, mat=True)


def test_trainable_view_of_a_lora_model_reads_saved_adapter_names(tmp_path):
    model = lora_lm("mistral")
    model.save_pretrained(str(tmp_path / "adapter"))
    view = TrainableView(model)
    (state,) = (Trajectory([tmp_path / "adapter"]).load(0),)
    assert torch.equal(view.vector_from_state(state), view.vector())
