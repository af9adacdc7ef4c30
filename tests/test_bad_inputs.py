"""Every user mistake we know of ends ``hf-efftrain`` with one stderr line, exit code 2, and nothing written.

One row per bad input: a recipe field of the wrong type, a damaged model folder (config, weights, NaN), a
setting that cannot work, a bad MAT history, an unknown dataset while offline. Each row names the output
location the command would write; it must be absent afterwards (or, if it existed, byte for byte the same).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, BertForSequenceClassification

from hf_efftrain.cmd.posthoc import fit_cmd
from hf_efftrain.data import minilm_path
from hf_efftrain.trajectory import Trajectory, save_snapshot

pytestmark = pytest.mark.usefixtures("one_thread")
WEIGHTS = "model.safetensors"


def _config(tokenizer) -> BertConfig:
    return BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=64, num_labels=2)  # fmt: skip


def _damaged(good: Path, folder: Path, damage: str) -> None:
    """A copy of the model folder ``good`` with one kind of damage."""
    shutil.copytree(good, folder)
    config, weights = folder / "config.json", folder / WEIGHTS
    if damage == "garbage_config":
        config.write_text("{this is not json")
    elif damage == "typed_config":
        config.write_text(json.dumps({**json.loads(config.read_text()), "hidden_size": "big"}))
    elif damage == "list_config":
        config.write_text("[1, 2]")
    elif damage == "no_weights":
        weights.unlink()
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage in ("nan", "inf"):
        tensors = load_file(weights)
        name = next(n for n in tensors if n.endswith("attention.self.query.weight"))
        tensors[name][0, 0] = float(damage)
        save_file(tensors, weights, metadata={"format": "pt"})


# each damage and what its error line must say besides the folder's name
DAMAGES = {
    "garbage_config": "config.json: not valid JSON",
    "typed_config": "'hidden_size' expected int",
    "list_config": "config.json: expected a JSON object",
    "no_weights": "no weights file",
    "truncated": "model.safetensors: cannot read safetensors weights",
    "nan": "holds NaN or Inf values",
    "inf": "holds NaN or Inf values",
}


def _recipe(path: Path, **fields) -> Path:
    recipe = {
        "sources": ["mlm"],
        "task": "masked-lm",
        "steps": [{"depth": {"strategy": "copy_all", "target_layers": 4}}],
    }
    path.write_text(yaml.safe_dump({**recipe, **fields}))
    return path


def _models(root: Path, tokenizer) -> None:
    """A masked LM and a classifier, each with every damaged copy and one with a broken tokenizer."""
    for name, cls in (("mlm", BertForMaskedLM), ("clf", BertForSequenceClassification)):
        cls(_config(tokenizer)).save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        for damage in DAMAGES:
            _damaged(root / name, root / f"{name}_{damage}", damage)
        shutil.copytree(root / name, root / f"{name}_badtok")
        (root / f"{name}_badtok" / "tokenizer.json").write_text("{garbage")
    for damage in [*DAMAGES, "badtok"]:
        _recipe(root / f"src_{damage}.yaml", sources=[f"mlm_{damage}"])
    _recipe(root / "stack.yaml")
    _recipe(root / "inter.yaml", steps=[{"depth": {"strategy": "interleave", "target_layers": 4}}])


def _trajectories(root: Path, tokenizer) -> None:
    """Four snapshots of a classifier, copies with a garbage config and with a NaN, and a CMD fit of them."""
    params = {n: p.detach() for n, p in BertForSequenceClassification(_config(tokenizer)).named_parameters()}
    for step in range(4):
        save_snapshot(root / "traj", step, {n: t + 0.01 * step * torch.randn_like(t) for n, t in params.items()})
    shutil.copytree(root / "traj", root / "traj_config")
    (root / "traj_config" / "snapshot-0" / "config.json").write_text("{garbage")
    shutil.copytree(root / "traj", root / "traj_nan")
    broken = root / "traj_nan" / "snapshot-2" / WEIGHTS
    tensors = load_file(broken)
    tensors["classifier.weight"][0, 0] = float("nan")
    save_file(tensors, broken)
    fit_cmd(Trajectory(root / "traj"), modes=2, candidates=64, base_model=str(root / "clf")).save(root / "cmdfit")


def _run_folders(root: Path) -> None:
    """Run folders with a MAT history that is garbage, a list, mis-shaped, empty or missing; a bad trainer state."""
    history = {"units": ["L0.attn"], "history": [{"step": 1, "lambda": [1.0, 2.0], "active": [True]}],
               "measurements": 1, "measure_seconds": 0.1, "flops_full": 1.0, "flops_done": 1.0}  # fmt: skip
    files = {
        "mat_garbage/mat_history.json": '{"units": [',
        "mat_list/mat_history.json": "[1, 2, 3]",
        "mat_shape/mat_history.json": json.dumps(history),
        "mat_empty/mat_history.json": json.dumps({**history, "history": []}),
        "run_state/trainer_state.json": json.dumps({"global_step": 4, "log_history": 5}),
    }
    for relative, text in files.items():
        (root / relative).parent.mkdir()
        (root / relative).write_text(text)
    (root / "mat_missing").mkdir()
    (root / "empty_data").mkdir()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Everything the bad inputs point at, built once: tiny BERTs with MiniLM's tokenizer, trajectories, runs."""
    root = tmp_path_factory.mktemp("bad_inputs")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    torch.manual_seed(0)
    _models(root, tokenizer)
    _trajectories(root, tokenizer)
    _run_folders(root)
    return root


def _step(**params) -> dict:
    return {"steps": [{"depth": {"strategy": "copy_all", **params}}]}


LAG = ["lag", "{root}/stack.yaml", "{root}/inter.yaml", "--output", "{out}", "--lag-steps", "1"]
CMD_FIT = ["cmd", "fit", "{root}/traj", "{out}", "--no-plots"]
TRANSFER = ["transfer", "{root}/traj", "{root}/clf", "{out}", "--steps", "1"]
RECONSTRUCT = ["cmd", "reconstruct", "{root}/cmdfit", "--step", "1", "--save", "{out}"]

# (id, argv ({root} and {out} are filled in) or the fields of a bad recipe, words the error line must contain)
# fmt: off
CASES = [
    ("recipe_float_layers", _step(target_layers=4.7), "steps[0].depth.target_layers: expected an integer, got 4.7"),
    ("recipe_word_layers", _step(target_layers="four"), "target_layers: expected an integer, got 'four'"),
    ("recipe_seed", {"seed": "abc"}, "seed: expected an integer, got 'abc'"),
    ("recipe_width", {"steps": [{"width": {"intermediate_size": "big"}}]}, "intermediate_size: expected an integer"),
    ("recipe_noise", {"steps": [{"width": {"noise": "lots"}}]}, "width.noise: expected a number, got 'lots'"),
    ("recipe_slices", _step(strategy="slices", slices=[["a", 0, 2]]), "slices[0][0]: expected an integer, got 'a'"),
    ("recipe_sources", {"sources": 5}, "sources: expected a list, got 5"),
    ("recipe_zero_heads", {"steps": [{"width": {"num_heads": 0}}]}, "width.num_heads: must be at least 1, got 0"),
    ("recipe_nan_noise", {"steps": [{"width": {"noise": float("nan")}}]}, "noise: must be a finite number, got nan"),
    ("recipe_no_slices", _step(strategy="slices", slices=[]), "steps[0].depth.slices: must not be empty"),
    ("recipe_notes", {"notes": {"base_models": "org/a"}}, "notes.base_models: expected a list, got 'org/a'"),
    ("recipe_all_errors", {"seed": "abc", "sources": 5}, "recipe.yaml: sources: expected a list, got 5; seed: "),
    *[(f"grow_{d}", ["grow", f"{{root}}/src_{d}.yaml", "{out}"], (f"mlm_{d}", w)) for d, w in DAMAGES.items()],
    ("grow_nan_names_tensor", ["grow", "{root}/src_nan.yaml", "{out}"], "attention.self.query.weight' holds NaN"),
    *[
        (f"lag_{d}", ["lag", "{root}/stack.yaml", f"{{root}}/src_{d}.yaml", "--output", "{out}"], (f"mlm_{d}", w))
        for d, w in DAMAGES.items()
    ],
    ("lag_batch_size", [*LAG, "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    ("lag_block_size", [*LAG, "--block-size", "0"], "--block-size must be at least 1, got 0"),
    ("lag_learning_rate", [*LAG, "--learning-rate", "nan"], "--learning-rate must be a positive finite number"),
    ("lag_one_recipe", ["lag", "{root}/stack.yaml", "--output", "{out}"], "two or more recipes, got 1"),
    ("lag_empty_dataset", [*LAG, "--dataset", "{root}/empty_data"], "empty_data is an empty folder"),
    ("lag_hub_dataset_offline", [*LAG, "--dataset", "unknown_name"], "'unknown_name' is not an offline dataset"),
    ("cmd_fit_candidates", [*CMD_FIT, "--candidates", "0"], "--candidates must be at least 2"),
    ("cmd_fit_chunk_zero", [*CMD_FIT, "--chunk-elements", "0"], "--chunk-elements must be a positive number"),
    ("cmd_fit_chunk_negative", [*CMD_FIT, "--chunk-elements", "-5"], "got -5"),
    ("cmd_fit_modes_zero", [*CMD_FIT, "--modes", "0"], "--modes must be in 1..255, got 0"),
    ("cmd_fit_modes_big", [*CMD_FIT, "--modes", "256"], "--modes must be in 1..255, got 256"),
    ("cmd_fit_nan", ["cmd", "fit", "{root}/traj_nan", "{out}"], "snapshot-2/model.safetensors: tensor 'classifier"),
    *[
        (f"cmd_fit_base_{d}", [*CMD_FIT, "--base-model", f"{{root}}/clf_{d}"], (f"clf_{d}", w))
        for d, w in DAMAGES.items()
    ],
    *[
        (f"cmd_reconstruct_base_{d}", [*RECONSTRUCT, "--base-model", f"{{root}}/clf_{d}"], (f"clf_{d}", w))
        for d, w in DAMAGES.items()
    ],
    *[
        (f"transfer_target_{d}", ["transfer", "{root}/traj", f"{{root}}/clf_{d}", "{out}"], (f"clf_{d}", w))
        for d, w in DAMAGES.items()
    ],
    ("cmd_reconstruct_wrong_base", [*RECONSTRUCT, "--base-model", "{root}/mlm"], "4 CMD tensors are not in"),
    ("transfer_target_mismatch", ["transfer", "{root}/traj", "{root}/mlm", "{out}"], "does not exist in the target"),
    ("transfer_source_config", ["transfer", "{root}/traj_config", "{root}/clf", "{out}"], "config.json: not valid"),
    ("cmd_reconstruct_bad_tokenizer", [*RECONSTRUCT, "--base-model", "{root}/clf_badtok"], "no usable tokenizer"),
    ("transfer_bad_tokenizer", ["transfer", "{root}/traj", "{root}/clf_badtok", "{out}"], "has no usable tokenizer"),
    ("lag_bad_tokenizer", ["lag", "{root}/src_badtok.yaml", *LAG[2:]], "mlm_badtok has no usable tokenizer"),
    ("transfer_nan", ["transfer", "{root}/traj_nan", "{root}/clf", "{out}"], "holds NaN or Inf"),
    ("transfer_offline_dataset", [*TRANSFER, "--dataset", "unknown_name"], "HF_DATASETS_OFFLINE"),
    ("transfer_max_length_zero", [*TRANSFER, "--max-length", "0"], "--eval-samples must be at least 1, got 0 and"),
    ("transfer_max_length_long", [*TRANSFER, "--max-length", "65"], "exceeds the target's max_position_embeddings"),
    ("transfer_eval_samples", [*TRANSFER, "--eval-samples", "0"], "got 64 and 0"),
    ("grow_lag_report", ["grow", "{root}/stack.yaml", "{out}", "--lag-report", "{root}/traj"], "lag_report.json"),
    ("lag_dataset_file", [*LAG, "--dataset", "{root}/stack.yaml"], "stack.yaml' cannot be loaded"),
    ("usage_bad_option_value", [*CMD_FIT, "--modes", "x"], "Invalid value for '--modes'"),
    ("usage_missing_argument", ["cmd", "fit", "{root}/traj"], "Missing argument 'OUT'. (see `hf-efftrain cmd fit"),
    ("usage_unknown_command", ["cmd", "fitt"], "No such command 'fitt'"),
    ("usage_verbosity", ["--verbosity", "loud", "mat", "summary", "{out}"], "choose one of debug, info"),
    ("report_mat_list", ["report", "{root}/mat_list", "--out", "{out}"], "mat_list/mat_history.json: not a MAT"),
    ("report_trainer_state", ["report", "{root}/run_state", "--out", "{out}"], "trainer_state.json is not laid out"),
    *[
        (f"mat_{cmd}_{kind}", ["mat", cmd, f"{{root}}/mat_{kind}"], "mat_history.json")
        for cmd in ("summary", "heatmap")
        for kind in ("garbage", "list", "shape", "empty", "missing")
    ],
]
# fmt: on


def _snapshot(path: Path) -> dict[str, bytes] | None:
    if not path.exists():
        return None
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("argv", "words"), [pytest.param(a, w, id=i) for i, a, w in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(world, run_cli, tmp_path, argv, words):
    out = tmp_path / "out"
    if isinstance(argv, dict):  # recipe fields: the types are wrong, so no source is ever read
        argv = ["grow", str(_recipe(tmp_path / "recipe.yaml", **argv)), "{out}"]
    args = [a.format(root=world, out=out) for a in argv]
    inputs = [Path(a) for a in args if a.startswith(str(world))]
    before = {p: _snapshot(p) for p in [out, *inputs]}
    code, _, err = run_cli(args)
    assert code == 2, err
    assert err.startswith("hf-efftrain: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert all(w in err for w in ([words] if isinstance(words, str) else words)), err
    assert {p: _snapshot(p) for p in before} == before


def test_an_internal_error_keeps_its_traceback(world, monkeypatch, tmp_path):
    """Only user errors become one line: a bug (here a RuntimeError inside the fit) must reach the developer."""
    from hf_efftrain.cli import main

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("hf_efftrain.cmd.posthoc.fit_cmd", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["cmd", "fit", str(world / "traj"), str(tmp_path / "out")])


def test_a_legacy_bin_folder_is_checked_for_nan_after_loading(world, tmp_path):
    """Folders without safetensors cannot be checked before loading; the loaded weights are checked instead."""
    from transformers import BertForMaskedLM

    from hf_efftrain.errors import NonFiniteWeightsError
    from hf_efftrain.model_folder import load_model

    model = BertForMaskedLM.from_pretrained(world / "mlm")
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight[0, 0] = float("inf")
    (tmp_path / "bin").mkdir()
    shutil.copy(world / "mlm" / "config.json", tmp_path / "bin")
    torch.save(model.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    with pytest.raises(NonFiniteWeightsError, match="pytorch_model.bin: tensor 'bert.embeddings.word_embeddings"):
        load_model(tmp_path / "bin", BertForMaskedLM)
