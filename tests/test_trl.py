"""MAT and TWA as plain callbacks inside TRL's ``SFTTrainer`` (a Trainer subclass): they link up by themselves."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset

from hf_efftrain.mat import MATCallback, MATConfig
from hf_efftrain.testing import VOCAB, tiny_model, tiny_tokenizer
from hf_efftrain.twa import TWACallback, TWAConfig

trl = pytest.importorskip("trl")


def test_mat_and_twa_link_inside_sft_trainer(tmp_path, one_thread):
    gen = torch.Generator().manual_seed(0)
    data = Dataset.from_dict({"input_ids": torch.randint(3, VOCAB, (32, 12), generator=gen).tolist()})
    model = tiny_model("llama", task="causal-lm").train()
    mat = MATCallback(MATConfig(every=0.2, warmup_steps=0.2, probe_size=4, threshold=1.0))  # fractions of 10 steps
    twa = TWACallback(TWAConfig(start=0.6, every=0.2, steps=0.2, lr=0.05))
    released_at: list[int] = []
    twa.on_twa_phase.append(lambda: released_at.append(int(mat.released)))
    args = trl.SFTConfig(
        output_dir=str(tmp_path), max_steps=10, per_device_train_batch_size=4, learning_rate=1e-3, logging_steps=1,
        report_to="none", save_strategy="no", disable_tqdm=True, use_cpu=True, seed=0, max_length=12,
    )  # fmt: skip
    trainer = trl.SFTTrainer(
        model=model, args=args, train_dataset=data, processing_class=tiny_tokenizer(), callbacks=[twa, mat]
    )
    trainer.train()
    assert twa.start_step == 6 and twa.config.steps == 2 and twa.collected_steps == [2, 4, 6]
    assert mat.engine.config.every == 2 and len(mat.engine.history) >= 2  # MAT measured while TWA collected
    assert twa.phase == "done" and mat.released and released_at == [1]  # released when the phase began
    assert bool(mat.engine.active.all())
    assert max(entry["step"] for entry in mat.engine.history) <= twa.start_step


def test_twa_and_cmd_over_a_lora_adapter_inside_sft_trainer(tmp_path, one_thread):
    """TRL wraps the model in LoRA itself (``peft_config``); TWA averages the adapter, CMD decomposes its snapshots."""
    peft = pytest.importorskip("peft")
    from hf_efftrain.cmd import fit_cmd
    from hf_efftrain.cmd.export import export_reconstruction, find_base_model
    from hf_efftrain.trajectory import SnapshotCallback, Trajectory

    gen = torch.Generator().manual_seed(0)
    data = Dataset.from_dict({"input_ids": torch.randint(3, VOCAB, (32, 12), generator=gen).tolist()})
    base = tiny_model("llama", task="causal-lm", hidden_size=32).train()
    frozen = {n: p.detach().clone() for n, p in base.named_parameters()}
    twa = TWACallback(TWAConfig(start=0.5, every=0.125, steps=0.25, lr=0.5))
    snapshots = SnapshotCallback(tmp_path / "snapshots", every=1)
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    args = trl.SFTConfig(
        output_dir=str(tmp_path), max_steps=8, per_device_train_batch_size=4, learning_rate=1e-2, logging_steps=1,
        report_to="none", save_strategy="no", disable_tqdm=True, use_cpu=True, seed=0, max_length=12,
    )  # fmt: skip
    trainer = trl.SFTTrainer(
        model=base, args=args, train_dataset=data, processing_class=tiny_tokenizer(), peft_config=lora,
        callbacks=[snapshots, twa],
    )  # fmt: skip
    trainer.train()
    assert twa.phase == "done" and twa.collected_steps == [1, 2, 3, 4]
    assert twa.view.names and all("lora_" in name for name in twa.view.names)  # the basis holds the adapter only
    after = {n.replace(".base_layer", ""): p for n, p in base.named_parameters() if "lora_" not in n}
    assert after.keys() == frozen.keys() and all(torch.equal(after[n], frozen[n]) for n in frozen)
    trainer.save_model()  # output_dir becomes the adapter folder CMD exports against
    trajectory = Trajectory(tmp_path / "snapshots")
    assert trajectory.steps == [0, 1, 2, 3, 4, 5, 6] and all("lora_" in name for name in trajectory.names)
    result = fit_cmd(trajectory, modes=2)
    folder = find_base_model(tmp_path / "snapshots", [c.folder for c in trajectory.checkpoints])
    assert folder == str(tmp_path.resolve())
    export_reconstruction(result.reconstruct(3), folder, tmp_path / "cmd_adapter")
    loaded = peft.PeftModel.from_pretrained(
        tiny_model("llama", task="causal-lm", hidden_size=32), tmp_path / "cmd_adapter"
    )
    rebuilt = result.reconstruct(3)
    assert all(torch.allclose(p, rebuilt[n]) for n, p in loaded.named_parameters() if "lora_" in n)
