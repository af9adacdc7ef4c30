"""``hf-efftrain transfer``: loadable output folders, a report, and one-line errors for mismatched inputs."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertForSequenceClassification

from hf_efftrain.cli import main
from hf_efftrain.data import minilm_path
from hf_efftrain.trajectory import Trajectory, save_snapshot

pytestmark = pytest.mark.usefixtures("one_thread")


def _bert(tokenizer, seed: int, hidden: int = 16) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=32,
        max_position_embeddings=64,
        num_labels=2,
    )
    return BertForSequenceClassification(config)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    source = _bert(tokenizer, seed=0)
    save_snapshot(root / "source", 0, dict(source.named_parameters()))
    optimizer = torch.optim.SGD(source.parameters(), lr=0.5)
    batch = tokenizer(["a great movie", "an awful film"], padding=True, return_tensors="pt")
    for step in range(1, 5):
        source(**batch, labels=torch.tensor([1, 0])).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        save_snapshot(root / "source", step, dict(source.named_parameters()))
    for name, hidden in (("target", 16), ("wide", 24)):
        _bert(tokenizer, seed=1, hidden=hidden).save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    return root


def test_cli_writes_loadable_points_and_a_report(folders, capsys):
    out = folders / "out"
    argv = [
        "transfer",
        str(folders / "source"),
        str(folders / "target"),
        str(out),
        "--steps",
        "3",
        "--batches",
        "1",
        "--batch-size",
        "8",
        "--eval-samples",
        "32",
        "--save",
        "all",
        "--quiet",
    ]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    report = json.loads((out / "transfer_report.json").read_text())
    assert [p["step"] for p in report["points"]] == [0, 1, 2, 3]
    assert all(0.0 <= p["accuracy"] <= 1.0 and p["loss"] > 0 for p in report["points"])
    assert report["config"]["method"] == "fgmt" and "residual" in report["permutation"]
    assert report["prior"]["related"] is False and report["prior"]["stay"] == 0.0  # independent inits: plain,
    assert report["prior"]["warm_start"] is False  # each step matched from the identity
    assert Trajectory(out).steps == [0, 1, 2, 3]
    model = AutoModelForSequenceClassification.from_pretrained(out / "checkpoint-3")
    initial = AutoModelForSequenceClassification.from_pretrained(folders / "target")
    moved = model.classifier.weight - initial.classifier.weight
    assert moved.abs().max() > 0  # the end point really carries the transferred update
    printed = capsys.readouterr().out
    assert (
        "step   3" in printed
        and "matching prior: none, the paper's plain matching, each step from the identity (the target does not"
        in printed
    )


def test_a_target_sharing_the_sources_weights_gets_the_identity_prior(folders, tmp_path):
    from hf_efftrain.transfer import TransferConfig
    from hf_efftrain.transfer.tool import run_transfer

    tokenizer = AutoTokenizer.from_pretrained(folders / "target")
    shared = _bert(tokenizer, seed=0)  # the source's own start, with every weight a little moved
    with torch.no_grad():
        for param in shared.parameters():
            param.add_(0.01 * param.std() * torch.randn_like(param) if param.numel() > 1 else 0)
    shared.save_pretrained(tmp_path / "shared")
    tokenizer.save_pretrained(tmp_path / "shared")
    config = TransferConfig(steps=2, batches_per_step=1, batch_size=8)
    report = run_transfer(
        folders / "source", tmp_path / "shared", tmp_path / "out", config, eval_samples=16, progress=False
    )
    assert report["prior"]["related"] and report["prior"]["similarity"] > 0.99
    assert (report["prior"]["stay"], report["prior"]["at"]) == (1.0, "identity")
    from hf_efftrain.transfer.prior import describe_prior

    assert describe_prior(report["prior"]).startswith(
        "stay 1 at the identity permutation, warm-started (the target shares"
    )


@pytest.mark.parametrize(
    ("target", "message"),
    [("wide", "has shape"), ("missing", "no config.json")],
)
def test_cli_mismatch_is_one_line_exit_2(folders, capsys, target, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["transfer", str(folders / "source"), str(folders / target), str(folders / "bad"), "--quiet"])
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if "hf-efftrain" in line]
    assert len(lines) == 1 and lines[0].startswith("hf-efftrain: error:") and message in lines[0]


def test_cli_rejects_unknown_method(folders, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["transfer", str(folders / "source"), str(folders / "target"), str(folders / "x"), "--method", "sgd"])
    assert exit_info.value.code == 2
    assert "unknown transfer method" in capsys.readouterr().err


def test_cli_checkpoint_spacing_walks_the_saved_points(folders):
    out = folders / "naive"
    argv = ["transfer", str(folders / "source"), str(folders / "target"), str(out), "--spacing", "checkpoints",
            "--method", "naive", "--eval-samples", "16", "--quiet"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    report = json.loads((out / "transfer_report.json").read_text())
    assert [p["lambda"] for p in report["points"]] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert Trajectory(out).steps == [4]  # --save end: only the last point


def test_a_transfer_whose_gradient_pairs_cannot_fit_is_refused_before_it_starts():
    """2 × T × (weights with two permuted axes) × 4 bytes must fit in the memory available, with a margin."""
    from hf_efftrain.testing import tiny_model
    from hf_efftrain.transfer import TransferConfig, permutation_spec
    from hf_efftrain.transfer.matching import GradientPairs, kept_pair_bytes
    from hf_efftrain.transfer.tool import GROWTH_PER_KEPT_BYTE, TransferError, check_memory

    model = tiny_model("bert", task="classification")
    spec, shapes = permutation_spec(model), {n: p.shape for n, p in model.named_parameters()}
    pairs = GradientPairs(spec)
    for _ in range(2):
        pairs.add(*({n: torch.ones(s) for n, s in shapes.items()},) * 2)
    assert kept_pair_bytes(spec, shapes, 2) == sum(2 * t.numel() * 4 for t, _ in pairs.kept.values())
    per_pair = GROWTH_PER_KEPT_BYTE * kept_pair_bytes(spec, shapes, 1)  # resident memory per pair, as measured
    check_memory(spec, shapes, TransferConfig(steps=10), available=10 * per_pair / 0.8)
    with pytest.raises(TransferError, match=r"a T = 10 transfer .* pass --steps 9 or fewer"):
        check_memory(spec, shapes, TransferConfig(steps=10), available=9.5 * per_pair / 0.8)
    check_memory(spec, shapes, TransferConfig(steps=10, method="naive"), available=0)  # keeps no pairs
