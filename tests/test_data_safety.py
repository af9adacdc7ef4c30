"""No command loses a user's data: outputs are checked before any work and replaced whole, or not at all.

Each refusal is one line on stderr, exit code 2, no traceback, and leaves every file it was pointed at byte for
byte as it was. The kill tests run a real child process that dies between two writes (``os._exit``) and check
that the previous state survives and the next write cleans up after it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, BertForSequenceClassification

from hf_efftrain.atomic import atomic_directory, clean_leftovers
from hf_efftrain.data import minilm_path
from hf_efftrain.errors import OutputError
from hf_efftrain.outputs import MANIFEST_FILE, check_output, output_directory
from hf_efftrain.run_folder import check_run_folder, start_run_folder
from hf_efftrain.trajectory import save_snapshot

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones included) with its content hash; ``{}`` when ``root`` is absent."""
    if root.is_file():
        return {".": hashlib.sha256(root.read_bytes()).hexdigest()}
    if not root.exists():
        return {}
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A model folder, a recipe growing it, a trajectory with its base model, a CMD fit and a user's folder."""
    root = tmp_path_factory.mktemp("safety")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    small = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    config = BertConfig(vocab_size=tokenizer.vocab_size, max_position_embeddings=64, num_labels=2, **small)
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(root / "tiny")
    tokenizer.save_pretrained(root / "tiny")
    recipe = {
        "sources": [str(root / "tiny")],
        "task": "masked-lm",
        "steps": [{"depth": {"strategy": "copy_all", "target_layers": 4}}],
    }
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    classifier = BertForSequenceClassification(config)
    classifier.save_pretrained(root / "run")
    tokenizer.save_pretrained(root / "run")
    for step in range(4):
        with torch.no_grad():
            for p in classifier.parameters():
                p.add_(0.01 * torch.randn_like(p))
        save_snapshot(root / "run" / "snapshots", step, dict(classifier.named_parameters()))
    BertForSequenceClassification(config).save_pretrained(root / "target")
    tokenizer.save_pretrained(root / "target")
    (root / "user").mkdir()
    (root / "user" / "thesis.txt").write_text("three years of work")
    return root


def _fit(world: Path, run_cli) -> Path:
    out = world / "fit"
    if not out.exists():
        code, _, err = run_cli(["cmd", "fit", str(world / "run" / "snapshots"), str(out), "-m", "2", "--no-plots"])
        assert code == 0, err
    return out


REFUSALS = {
    # name: (argv built from the world folder, the path that must stay unchanged, words the line must hold)
    "report out is the run's parent": (lambda w: ["report", str(w / "run"), "--out", str(w)], ".", "holds the input"),
    "report out is the run": (lambda w: ["report", str(w / "run"), "--out", str(w / "run")], "run", "is the input"),
    "report out holds user files": (lambda w: ["report", str(w / "run"), "--out", str(w / "user")], "user", "did not"),
    "grow into a user folder": (lambda w: ["grow", str(w / "recipe.yaml"), str(w / "user")], "user", "did not write"),
    "grow onto its source": (lambda w: ["grow", str(w / "recipe.yaml"), str(w / "tiny")], "tiny", "is the input"),
    "grow over a file": (lambda w: ["grow", str(w / "recipe.yaml"), str(w / "user/thesis.txt")], "user", "is a file"),
    "grow under a file": (lambda w: ["grow", str(w / "recipe.yaml"), str(w / "user/thesis.txt/x")], "user", "file"),
    "cmd fit into its trajectory": (
        lambda w: ["cmd", "fit", str(w / "run/snapshots"), str(w / "run/snapshots")],
        "run",
        "is the input",
    ),
    "cmd fit into a checkpoint of it": (
        lambda w: ["cmd", "fit", str(w / "run/snapshots"), str(w / "run/snapshots/snapshot-9")],
        "run",
        "would become part of",
    ),
    "cmd fit into a user folder": (
        lambda w: ["cmd", "fit", str(w / "run/snapshots"), str(w / "user")],
        "user",
        "did not write",
    ),
    "cmd reconstruct into a user folder": (
        lambda w: ["cmd", "reconstruct", str(w / "fit"), "--step", "1", "--save", str(w / "user")],
        "user",
        "did not write",
    ),
    "cmd reconstruct into its fit": (
        lambda w: ["cmd", "reconstruct", str(w / "fit"), "--step", "1", "--save", str(w / "fit")],
        "fit",
        "is the input",
    ),
    "transfer onto its source": (
        lambda w: ["transfer", str(w / "run/snapshots"), str(w / "target"), str(w / "run/snapshots")],
        "run",
        "is the input",
    ),
    "transfer onto its target": (
        lambda w: ["transfer", str(w / "run/snapshots"), str(w / "target"), str(w / "target")],
        "target",
        "is the input",
    ),
    "transfer into a user folder": (
        lambda w: ["transfer", str(w / "run/snapshots"), str(w / "target"), str(w / "user")],
        "user",
        "did not write",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_outputs_are_one_line_exit_2_and_change_nothing(world, run_cli, case):
    _fit(world, run_cli)
    argv, guarded, words = REFUSALS[case]
    before = tree(world / guarded)
    code, out, err = run_cli(argv(world))
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and err.startswith("hf-efftrain: error: output ") and words in err, err
    assert "Traceback" not in err + out
    assert tree(world / guarded) == before


def test_earlier_output_is_replaced_only_with_overwrite_and_only_when_untouched(world, run_cli):
    out = world / "grown"
    assert run_cli(["grow", str(world / "recipe.yaml"), str(out)])[0] == 0
    assert json.loads((out / MANIFEST_FILE).read_text())["command"] == "grow"
    first = tree(out)
    code, _, err = run_cli(["grow", str(world / "recipe.yaml"), str(out)])
    assert code == 2 and "pass --overwrite to replace it" in err and tree(out) == first
    assert run_cli(["grow", str(world / "recipe.yaml"), str(out), "--overwrite"])[0] == 0
    assert (out / "growth_recipe.yaml").is_file() and not [p for p in world.iterdir() if ".grown." in p.name]
    (out / "notes.txt").write_text("my notes")  # the user adds a file: the folder is no longer only ours
    edited = tree(out)
    code, _, err = run_cli(["grow", str(world / "recipe.yaml"), str(out), "--overwrite"])
    assert code == 2 and "changed since" in err and tree(out) == edited
    code, _, err = run_cli(["cmd", "fit", str(world / "run/snapshots"), str(out), "--overwrite"])
    assert code == 2 and "holds the output of `grow`" in err and tree(out) == edited


def test_cmd_fit_and_reconstruct_write_whole_folders(world, run_cli):
    fit = _fit(world, run_cli)
    assert {"cmd.safetensors", "cmd.json", "summary.md", MANIFEST_FILE} <= {p.name for p in fit.iterdir()}
    save = world / "rec"
    assert run_cli(["cmd", "reconstruct", str(fit), "--step", "2", "--save", str(save)])[0] == 0
    assert (save / "config.json").is_file() and json.loads((save / MANIFEST_FILE).read_text())["files"]


def test_run_folder_is_claimed_once_and_an_earlier_run_is_removed_only_on_request(tmp_path):
    out = tmp_path / "run"
    assert check_run_folder(out, resuming=False, overwrite=False) is False
    start_run_folder(out, "finetune.py", remove_earlier=False)
    (out / "trainer_state.json").write_text("{}")
    (out / "checkpoint-5").mkdir()
    with pytest.raises(OutputError, match="holds an earlier run; pass --overwrite_output_dir true"):
        check_run_folder(out, resuming=False, overwrite=False)
    assert check_run_folder(out, resuming=True, overwrite=False) is False  # resuming continues the same run
    assert check_run_folder(out, resuming=False, overwrite=True) is True
    start_run_folder(out, "finetune.py", remove_earlier=True)
    assert [p.name for p in out.iterdir()] == [MANIFEST_FILE] and not list(tmp_path.glob(".run.*"))
    (out / "my_data.csv").write_text("1,2")
    with pytest.raises(OutputError, match="my_data.csv, which no run writes"):
        check_run_folder(out, resuming=False, overwrite=True)
    user = tmp_path / "user"
    user.mkdir()
    (user / "a.txt").write_text("x")
    with pytest.raises(OutputError, match="no hf_efftrain run wrote"):
        check_run_folder(user, resuming=False, overwrite=True)
    assert (out / "my_data.csv").read_text() == "1,2" and (user / "a.txt").read_text() == "x"


def test_example_refuses_a_second_run_in_the_same_folder_before_loading_anything(tmp_path):
    out = tmp_path / "run"
    start_run_folder(out, "finetune.py", remove_earlier=False)
    (out / "mat_history.json").write_text("{}")
    before = tree(out)
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "finetune.py"), "--output_dir", str(out), "--max_steps", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("finetune.py: error: output_dir")
    assert tree(out) == before


def test_check_output_accepts_new_and_empty_folders(tmp_path):
    assert check_output(tmp_path / "new", "x") == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    assert check_output(tmp_path / "empty", "x") == tmp_path / "empty"
    with output_directory(tmp_path / "empty", "x") as tmp:
        (tmp / "a.txt").write_text("a")
    assert check_output(tmp_path / "empty", "x", overwrite=True) == tmp_path / "empty"


# ---- kills between writes -------------------------------------------------------------------------------------
def _child(code: str) -> int:
    """Run ``code`` in a fresh interpreter (it may end itself with ``os._exit``); return its exit code."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env={**os.environ, "PYTHONPATH": str(REPO)})
    return done.returncode


def _folder_with(path: Path, text: str) -> None:
    with atomic_directory(path) as tmp:
        (tmp / "weights.txt").write_text(text)


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "two-renames"])
def test_a_kill_while_replacing_a_folder_keeps_a_whole_folder_and_the_next_write_cleans_up(tmp_path, exchange):
    target = tmp_path / "model"
    _folder_with(target, "old")
    code = f"""
        import os
        from pathlib import Path
        import hf_efftrain.atomic as atomic
        if not {exchange}:
            atomic._exchange = lambda a, b: False
        real_replace, calls = os.replace, []
        def dying_replace(src, dst):
            calls.append(dst)
            if Path(dst) == Path({str(target)!r}) and len(calls) > 1:
                os._exit(9)  # killed between the two renames of the fallback
            real_replace(src, dst)
        os.replace = dying_replace
        real_rmtree = atomic.shutil.rmtree
        atomic.shutil.rmtree = lambda *a, **k: os._exit(9)  # killed after the swap, before the clean-up
        with atomic.atomic_directory({str(target)!r}) as tmp:
            (tmp / "weights.txt").write_text("new")
    """
    assert _child(code) == 9
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".model.")]
    assert leftovers  # the dead writer left its temporary folder behind
    if exchange:
        assert (target / "weights.txt").read_text() == "new"  # swapped in one step: never missing
    else:
        assert not target.exists()  # the window of the fallback ...
        clean_leftovers(target)  # ... is repaired by the next writer (or reader) of the same place
        assert (target / "weights.txt").read_text() == "old"
    _folder_with(target, "newest")
    assert (target / "weights.txt").read_text() == "newest"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_kill_between_the_two_files_of_a_cmd_result_is_refused_on_load(world, run_cli, tmp_path):
    from hf_efftrain.cmd import CMDResult
    from hf_efftrain.errors import CMDFitError

    fit = tmp_path / "fit"
    CMDResult.load(_fit(world, run_cli)).save(fit)
    code = f"""
        import os
        import hf_efftrain.cmd.result as result
        r = result.CMDResult.load({str(fit)!r})
        result.write_json = lambda *a, **k: os._exit(9)  # killed after the tensors, before the metadata
        r.save({str(fit)!r})
    """
    assert _child(code) == 9
    with pytest.raises(CMDFitError, match="come from different fits"):
        CMDResult.load(fit)


def test_an_unwritable_parent_is_refused_before_any_work(tmp_path, monkeypatch):
    """A read-only file system (EROFS) cannot be made in a test run as root; the probe write meets it the same way."""
    import errno
    import tempfile as tempfile_module

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile_module, "TemporaryFile", read_only)
    with pytest.raises(OutputError, match="cannot be written: .*Read-only file system"):
        check_output(tmp_path / "out", "grow")
    assert list(tmp_path.iterdir()) == []
