"""Trajectory reading (order, chunking, formats, errors) and SnapshotCallback under save_total_limit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import Trainer, TrainingArguments

from hf_efftrain.atomic import atomic_directory, write_json
from hf_efftrain.errors import (
    CorruptCheckpointError,
    MissingCheckpointError,
    NonFiniteWeightsError,
    TrajectoryMismatchError,
)
from hf_efftrain.testing import tiny_model
from hf_efftrain.trajectory import SnapshotCallback, Trajectory, save_snapshot


def _state(step: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(step)
    return {
        "a.weight": torch.randn(5, 3, generator=gen),
        "b.bias": torch.randn(4, generator=gen),
        "scale": torch.tensor(float(step)),
    }


def _write_checkpoints(root, steps, prefix="checkpoint"):
    for step in steps:
        folder = root / f"{prefix}-{step}"
        folder.mkdir(parents=True)
        save_file(_state(step), str(folder / "model.safetensors"))


def test_checkpoints_are_ordered_numerically(tmp_path):
    _write_checkpoints(tmp_path, [100, 20, 3])
    (tmp_path / "runs").mkdir()  # unrelated folders are ignored
    traj = Trajectory(tmp_path)
    assert traj.steps == [3, 20, 100]
    assert traj.load(-1)["a.weight"].equal(_state(100)["a.weight"])
    assert traj.num_parameters == 15 + 4 + 1


@pytest.mark.parametrize("max_elements", [1, 7, 30, None])
def test_chunks_reassemble_every_tensor_and_respect_the_bound(tmp_path, max_elements):
    steps = [0, 5, 10]
    _write_checkpoints(tmp_path, steps, prefix="snapshot")
    traj = Trajectory(tmp_path)
    pieces: dict[str, list[torch.Tensor]] = {name: [] for name in traj.names}
    for chunk in traj.iter_chunks(max_elements=max_elements):
        assert chunk.values.shape[0] == len(steps)
        row_size = chunk.values.shape[1] // (chunk.rows.stop - chunk.rows.start)
        if max_elements is not None:  # at most the bound, unless a single row is already larger
            assert chunk.values.numel() <= max(max_elements, len(steps) * row_size)
        pieces[chunk.name].append(chunk.values)
    for name in traj.names:
        stacked = torch.cat(pieces[name], dim=1)
        expected = torch.stack([_state(s)[name].reshape(-1) for s in steps])
        assert stacked.equal(expected), name
        assert traj.tensor(name).equal(torch.stack([_state(s)[name] for s in steps]))


def test_explicit_folder_list_keeps_given_order(tmp_path):
    _write_checkpoints(tmp_path, [1, 2])
    traj = Trajectory([tmp_path / "checkpoint-2", tmp_path / "checkpoint-1"])
    assert traj.steps == [2, 1]


def test_sharded_and_adapter_checkpoints(tmp_path):
    state = _state(4)
    sharded = tmp_path / "checkpoint-4"
    sharded.mkdir()
    save_file({"a.weight": state["a.weight"]}, str(sharded / "model-00001-of-00002.safetensors"))
    save_file({"b.bias": state["b.bias"]}, str(sharded / "model-00002-of-00002.safetensors"))
    write_json(
        sharded / "model.safetensors.index.json",
        {"weight_map": {"a.weight": "model-00001-of-00002.safetensors", "b.bias": "model-00002-of-00002.safetensors"}},
    )
    adapter = tmp_path / "checkpoint-8"
    adapter.mkdir()
    save_file(
        {"a.weight": state["a.weight"] * 2, "b.bias": state["b.bias"]}, str(adapter / "adapter_model.safetensors")
    )
    traj = Trajectory(tmp_path)
    assert traj.tensor("a.weight")[1].equal(state["a.weight"] * 2)


def test_peft_trainer_checkpoints_are_read(tmp_path, tiny_classification_data):
    peft = pytest.importorskip("peft")
    model = peft.get_peft_model(
        tiny_model("bert", task="classification"),
        peft.LoraConfig(r=2, target_modules=["query", "value"], task_type="SEQ_CLS"),
    )
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=4,
        save_steps=2,
        per_device_train_batch_size=8,
        report_to="none",
        disable_tqdm=True,
        learning_rate=1e-2,
    )
    Trainer(model=model, args=args, train_dataset=tiny_classification_data).train()
    traj = Trajectory(tmp_path)
    assert traj.steps == [2, 4]
    assert any("lora_A" in name for name in traj.names)
    assert all("embeddings" not in name for name in traj.names)  # adapter weights only


def test_missing_folder_and_weights(tmp_path):
    with pytest.raises(MissingCheckpointError, match="does not exist"):
        Trajectory(tmp_path / "nope")
    with pytest.raises(MissingCheckpointError, match="no checkpoint-N"):
        Trajectory(tmp_path)
    (tmp_path / "checkpoint-3").mkdir()
    with pytest.raises(MissingCheckpointError, match="checkpoint-3: no weights file"):
        Trajectory(tmp_path)


def test_corrupt_file_is_named(tmp_path):
    _write_checkpoints(tmp_path, [1, 2])
    bad = tmp_path / "checkpoint-2" / "model.safetensors"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated
    with pytest.raises(CorruptCheckpointError, match="checkpoint-2/model.safetensors"):
        Trajectory(tmp_path)


def test_mismatched_shapes_and_names_are_named(tmp_path):
    _write_checkpoints(tmp_path, [1])
    odd = tmp_path / "checkpoint-2"
    odd.mkdir()
    save_file({**_state(2), "a.weight": torch.zeros(5, 4)}, str(odd / "model.safetensors"))
    with pytest.raises(TrajectoryMismatchError, match=r"checkpoint-2/model.safetensors: tensor 'a.weight'"):
        Trajectory(tmp_path)
    missing = tmp_path / "checkpoint-3"
    missing.mkdir()
    save_file({"a.weight": torch.zeros(5, 3)}, str(missing / "model.safetensors"))
    with pytest.raises(TrajectoryMismatchError, match="'b.bias' is missing"):
        Trajectory([tmp_path / "checkpoint-1", missing])
    with pytest.raises(TrajectoryMismatchError, match="has no tensor 'zzz'"):
        Trajectory([tmp_path / "checkpoint-1"], names=["zzz"])


def test_atomic_directory_leaves_nothing_on_failure(tmp_path):
    save_snapshot(tmp_path, 5, _state(5))
    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "snapshot-5") as tmp:
        (tmp / "model.safetensors").write_bytes(b"partial")
        raise RuntimeError("killed mid-write")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snapshot-5"]  # no temp leftovers
    assert Trajectory(tmp_path).load(0)["scale"].item() == 5.0  # old content intact


def test_snapshot_callback_survives_save_total_limit(tmp_path, tiny_classification_data):
    model = tiny_model("bert", task="classification")
    frozen = model.bert.embeddings.word_embeddings.weight
    frozen.requires_grad_(False)
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=7,
        save_steps=2,
        save_total_limit=1,
        per_device_train_batch_size=8,
        report_to="none",
        disable_tqdm=True,
        learning_rate=1e-2,
    )
    snapshots = tmp_path / "run" / "snapshots"
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=tiny_classification_data,
        callbacks=[SnapshotCallback(snapshots, every=3)],
    )
    trainer.train()
    assert sorted(p.name for p in (tmp_path / "run").glob("checkpoint-*")) == ["checkpoint-7"]
    traj = Trajectory(snapshots)
    assert traj.steps == [0, 3, 6, 7]
    assert "bert.embeddings.word_embeddings.weight" not in traj.names  # trainable weights only
    final = traj.load(-1)
    for name, tensor in final.items():
        assert tensor.equal(dict(model.named_parameters())[name].detach()), name
    assert not traj.load(0)["classifier.weight"].equal(final["classifier.weight"])


def test_chunks_keep_every_stored_dtype(tmp_path):
    gen = torch.Generator().manual_seed(0)
    saved = []
    for step in range(3):
        tensors = {
            "f32": torch.randn(9, 4, generator=gen),
            "bf16": torch.randn(5, 3, generator=gen).to(torch.bfloat16),
            "f16": torch.randn(7, generator=gen).half(),
            "i64": torch.randint(0, 100, (3, 2), generator=gen),
        }
        save_snapshot(tmp_path, step, tensors)
        saved.append(tensors)
    traj = Trajectory(tmp_path)
    for name in traj.names:
        got = torch.cat([c.values for c in traj.iter_chunks(names=[name], max_elements=8)], dim=1)
        assert got.dtype == saved[0][name].dtype
        assert got.equal(torch.stack([s[name].reshape(-1) for s in saved])), name


def test_a_reused_buffer_yields_the_same_values_in_one_allocation(tmp_path):
    _write_checkpoints(tmp_path, [1, 2, 3])
    traj = Trajectory(tmp_path)
    fresh = [c.values.clone() for c in traj.iter_chunks(max_elements=6)]
    held, reused = [], []
    for chunk in traj.iter_chunks(max_elements=6, reuse_buffer=True):
        held.append(chunk)  # kept alive, so fresh buffers could not share an address
        reused.append(chunk.values.clone())
    assert all(a.equal(b) for a, b in zip(fresh, reused, strict=True))
    pointers = {c.values.untyped_storage().data_ptr() for c in held}
    assert len(held) > 3 and len(pointers) <= 2  # grows once at most (the first chunk may be the smallest)


@pytest.mark.parametrize(
    ("row", "bad"),
    [(None, None), (1, float("nan")), (2, float("inf")), (0, float("-inf")), (1, "both infinities")],
)
def test_check_finite_names_the_first_bad_checkpoint(tmp_path, row, bad):
    values = torch.full((3, 10), 60000.0, dtype=torch.float16)  # every row's float16 sum overflows: still finite
    if bad == "both infinities":  # +inf and -inf: their sum is NaN, not inf
        values[row, 0], values[row, 1] = float("inf"), float("-inf")
    elif row is not None:
        values[row, 4] = bad
    for step in range(3):
        save_snapshot(tmp_path, step, {"w": values[step]})
    traj = Trajectory(tmp_path)
    if row is None:
        traj.check_finite()
        return
    with pytest.raises(NonFiniteWeightsError, match=f"snapshot-{row}"):
        traj.check_finite()


RSS_PROBE = """
import sys, torch
from hf_efftrain.trajectory import Trajectory
def peak_mb():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM'):
            return int(line.split()[1]) / 1024
traj = Trajectory(sys.argv[1])
before = peak_mb()
total = 0.0
for chunk in traj.iter_chunks(max_elements=2**16):
    total += float(chunk.values.sum())
print(peak_mb() - before)
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
def test_iterating_a_trajectory_does_not_grow_resident_memory(tmp_path):
    for step in range(24):  # 24 checkpoints x 8 MiB = 192 MiB of weights
        save_snapshot(tmp_path, step, {"w": torch.full((512, 4096), float(step))})
    done = subprocess.run([sys.executable, "-c", RSS_PROBE, str(tmp_path)], capture_output=True, text=True, check=True)
    growth_mb = float(done.stdout.strip().splitlines()[-1])
    assert growth_mb < 48, f"peak RSS grew by {growth_mb:.0f} MiB while streaming a 192 MiB trajectory"
