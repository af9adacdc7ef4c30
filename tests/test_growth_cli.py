"""`hf-efftrain lag`: recipes validated up front, candidates ranked, report written; user errors exit 2."""

from __future__ import annotations

import json

import pytest
import yaml
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

from hf_efftrain.cli import main
from hf_efftrain.data import minilm_path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("lagcli")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)  # fmt: skip
    BertForMaskedLM(config).save_pretrained(root / "tiny")
    tokenizer.save_pretrained(root / "tiny")
    (root / "data").mkdir()
    text = "The quick brown fox jumps over the lazy dog near the river bank. " * 40
    (root / "data" / "train.txt").write_text("\n".join([text] * 10))
    (root / "data" / "validation.txt").write_text(text)
    for name, strategy in (("stack", "copy_all"), ("inter", "interleave")):
        recipe = {
            "sources": ["tiny"],
            "task": "masked-lm",
            "steps": [{"depth": {"strategy": strategy, "target_layers": 4}}],
        }
        (root / f"{name}.yaml").write_text(yaml.safe_dump(recipe))
    return root


@pytest.mark.slow
def test_cli_lag_ranks_recipes_and_writes_the_report(setup, capsys):
    out = setup / "report"
    argv = ["lag", str(setup / "stack.yaml"), str(setup / "inter.yaml"), "--lag-steps", "2", "--output", str(out)]
    argv += ["--dataset", str(setup / "data"), "--block-size", "16", "--batch-size", "2", "--eval-blocks", "2"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code in (0, None)
    report = json.loads((out / "lag_report.json").read_text())
    assert sorted(report["ranking"]) == ["inter", "stack"]
    assert set(report["losses"]["stack"]) == {"0", "1", "2"}
    assert report["recipes"]["stack"]["steps"][0]["depth"]["strategy"] == "copy_all"
    assert "pick: **" in capsys.readouterr().out
    assert (out / "lag_curves.png").is_file()


def test_cli_lag_rejects_a_bad_recipe_before_training(setup, capsys):
    bad = setup / "bad.yaml"
    bad.write_text(
        yaml.safe_dump({"sources": ["tiny"], "steps": [{"depth": {"strategy": "slices", "slices": [[0, 0, 9]]}}]})
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["lag", str(setup / "stack.yaml"), str(bad), "--lag-steps", "2", "--output", str(setup / "nope")])
    assert exit_info.value.code == 2
    assert "layer 2 of source 0 does not exist" in capsys.readouterr().err
    assert not (setup / "nope").exists()
