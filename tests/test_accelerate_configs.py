"""The shipped Accelerate configs fit the hardware they name, and every reference to one names a shipped file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "examples" / "accelerate"
EXPECTED = {
    "single_process.yaml": (DistributedType.NO, 1, False),
    "multi_cpu.yaml": (DistributedType.MULTI_CPU, 2, True),
    "multi_gpu.yaml": (DistributedType.MULTI_GPU, 2, False),
    "fsdp.yaml": (DistributedType.FSDP, 2, False),
}


def test_configs_are_the_expected_ones():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_fits_its_hardware(name):
    config = load_config_from_file(str(CONFIGS / name))
    assert (config.distributed_type, config.num_processes, config.use_cpu) == EXPECTED[name]
    if name == "multi_cpu.yaml":  # accelerate starts CPU processes through mpirun and its hostfile
        assert (ROOT / config.mpirun_config["mpirun_hostfile"]).is_file()
    if name == "fsdp.yaml":
        assert config.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"


def test_every_reference_names_a_shipped_config():
    texts = [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("examples/*.py"), *ROOT.glob("tests/*.py")]
    referenced = {m for path in texts for m in re.findall(r"examples/accelerate/([\w.-]+\.yaml)", path.read_text())}
    assert referenced and referenced <= set(EXPECTED), referenced - set(EXPECTED)


def test_fsdp_is_refused_on_cpus_and_with_methods_that_need_whole_tensors(tmp_path, monkeypatch):
    """accelerate runs an FSDP launch on CPUs as DDP; methods reading whole parameters would see shards."""
    from hf_efftrain import EfficientTrainingArguments
    from hf_efftrain.errors import ArgumentsError

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(ArgumentsError, match="mat, snapshot_every cannot run under FSDP yet"):
        EfficientTrainingArguments(output_dir=str(tmp_path), mat=True, snapshot_every=5)
    EfficientTrainingArguments(output_dir=str(tmp_path))  # FSDP alone, one process: Trainer's own business
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ArgumentsError, match="no GPU: accelerate would run the processes as plain DDP"):
        EfficientTrainingArguments(output_dir=str(tmp_path))
