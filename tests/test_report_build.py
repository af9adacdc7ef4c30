"""``build_report`` on real tiny runs: every referenced image is a valid PNG, numbers match the run's JSON files.

One tiny BERT run with MAT, TWA and online CMD together (with eval) is shared by the module (~5 s).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from _report_support import tiny_run
from PIL import Image

from hf_efftrain.errors import ReportError
from hf_efftrain.outputs import MANIFEST_FILE
from hf_efftrain.report import build_report
from hf_efftrain.report.page import Page, Section, Table, Text, cell
from hf_efftrain.report.render import render

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMAGE_PATTERNS = {"html": r'<img src="([^"]+)"', "markdown": r"!\[[^\]]*\]\(([^)]+)\)"}
NOT_USED = "Not used in this run"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("report") / "run"
    tiny_run(folder)
    return folder


def _load(path: Path):
    return json.loads(path.read_text())


def images_of(page: Path, fmt: str) -> list[Path]:
    """Every image the page references, resolved next to it; each must be a real, non-empty PNG."""
    files = re.findall(IMAGE_PATTERNS[fmt], page.read_text())
    paths = [page.parent / f for f in files]
    for path in paths:
        assert path.is_file(), path
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            assert img.width > 200 and img.height > 150
    return paths


@pytest.mark.parametrize("fmt", ["html", "markdown"])
def test_report_of_a_run_with_every_method(run_dir, tmp_path, fmt):
    page = build_report(run_dir, tmp_path / fmt, fmt=fmt)
    assert page == tmp_path / fmt / ("report.html" if fmt == "html" else "report.md")
    names = {p.name for p in images_of(page, fmt)}
    expected = {"training.png", "mat_lambda_last.png", "mat_lambda_over_time.png", "mat_active.png"}
    expected |= {"twa_final.png", "twa_trajectory.png", "cmd_online_profiles.png", "cmd_online_sizes.png"}
    expected |= {"cmd_online_membership.png", "cmd_online_error.png"}
    assert names == expected
    written = {p.name for p in page.parent.iterdir()}
    assert written == names | {page.name, MANIFEST_FILE}  # nothing else left in the folder
    text = page.read_text()
    for title in ("MAT (modular adaptive training)", "TWA (trainable weight averaging)", "CMD (correlation mode"):
        assert title in text
    assert NOT_USED not in text


def test_key_numbers_equal_the_artifacts(run_dir, tmp_path):
    text = build_report(run_dir, tmp_path / "md", fmt="markdown").read_text()
    logs = _load(run_dir / "trainer_state.json")["log_history"]
    assert f"| eval_accuracy | {cell([e['eval_accuracy'] for e in logs if 'eval_accuracy' in e][-1])} |" in text
    assert f"| last training loss | {cell([e['loss'] for e in logs if 'loss' in e][-1])} |" in text
    mat = _load(run_dir / "mat_history.json")
    active = mat["history"][-1]["active"]
    assert 0 < sum(active) < len(active)  # the tiny run froze some heads: the check below means something
    assert f"| active modules | {sum(active)} / {len(active)} |" in text
    assert f"| last measurement step | {mat['history'][-1]['step']} |" in text
    twa = _load(run_dir / "twa_history.json")
    assert f"| checkpoints | {twa['report']['checkpoints']} |" in text
    for index, value in enumerate(twa["final_coefficients"]):
        assert f"| p{index} | {cell(value)} |" in text
    modes = _load(run_dir / "cmd_modes.json")
    for mode, info in enumerate(modes["stats"]["per_mode"]):
        assert f"| {mode} | {info['parameters']} |" in text
    assert f"| snapshots | {_load(run_dir / 'cmd_report.json')['snapshots']} |" in text


def test_default_folder_and_notes_for_methods_the_run_did_not_use(run_dir, tmp_path):
    only_mat = tmp_path / "only_mat"
    only_mat.mkdir()
    for name in ("trainer_state.json", "mat_history.json"):
        shutil.copy(run_dir / name, only_mat / name)
    page = build_report(only_mat)
    assert page == only_mat / "report" / "report.html"
    text = page.read_text()
    assert "MAT (modular adaptive training)" in text and "mat_lambda_last.png" in text
    assert text.count(NOT_USED) == 2
    assert "no twa_history.json" in text and "no cmd_report.json" in text
    assert "twa_" not in " ".join(p.name for p in page.parent.iterdir())
    images_of(page, "html")


def test_corrupt_json_keeps_the_previous_report_and_leaves_no_temporary_folder(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    page = build_report(run)
    before = page.read_text()
    (run / "twa_history.json").write_text('{"form": "subspace", ')
    with pytest.raises(ReportError, match="twa_history.json is not valid JSON"):
        build_report(run)
    assert page.read_text() == before
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []


def test_partial_run_reads_its_last_checkpoint(tmp_path):
    """A run killed after a checkpoint: trainer_state.json and MAT's state come from checkpoint-N."""
    run = tmp_path / "partial"
    tiny_run(run, twa=False, cmd_online=False, max_steps=8, save_strategy="steps", save_steps=4)
    (run / "trainer_state.json").unlink()
    (run / "mat_history.json").unlink()
    text = build_report(run, fmt="markdown").read_text()
    state = _load(run / "checkpoint-8" / "trainer_state.json")
    saved = state["stateful_callbacks"]["MATCallback"]["attributes"]["history"][-1]
    assert "checkpoint-8/trainer_state.json" in text and "trainer_state.json (run not finished)" in text
    assert f"| active modules | {sum(saved['active'])} / {len(saved['active'])} |" in text
    assert "| layer 1 |" in text  # module names saved with the MAT state
    images_of(run / "report" / "report.md", "markdown")


def test_errors_name_what_is_wrong(tmp_path):
    with pytest.raises(ReportError, match="does not exist"):
        build_report(tmp_path / "missing")
    with pytest.raises(ReportError, match="nothing to report .* mat_history.json"):
        build_report(tmp_path)
    with pytest.raises(ReportError, match="unknown report format 'pdf'"):
        build_report(tmp_path, fmt="pdf")
    assert list(tmp_path.iterdir()) == []


def test_html_escapes_run_text():
    page = Page("<b>run</b>", [Section("S", [Text("a <script>x</script>"), Table(("k&v",), (("<i>",),))])])
    html = render(page, "html")
    assert "<script>x" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert "<b>run" not in html and "<td>&lt;i&gt;</td>" in html and "k&amp;v" in html
