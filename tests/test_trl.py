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
