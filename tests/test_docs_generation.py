"""The generated parts of the docs: CLI and API references, knob tables, benchmark tables and their errors."""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from hf_efftrain.docs_gen import (
    DocsGenerationError,
    api_reference,
    arguments_table,
    benchmark_tables,
    cli_reference,
    expand_markers,
)
from hf_efftrain.docs_gen.api_reference import PACKAGES
from hf_efftrain.docs_gen.markdown import docstring_markdown

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
METHOD_PAGES = {"mat": "mat", "growth": "growth", "twa": "twa", "cmd": "cmd", "transfer": "transfer"}


def _click_paths(command, path: str, ctx_parent=None) -> list[str]:
    """Every command path of a click tree, walked here independently of the generator."""
    ctx = command.context_class(command, info_name=path.rsplit(" ", 1)[-1], parent=ctx_parent)
    paths = [path]
    for name in getattr(command, "list_commands", lambda _: [])(ctx):
        paths += _click_paths(command.get_command(ctx, name), f"{path} {name}", ctx)
    return paths


def _section(markdown: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of any level."""
    start = markdown.index(heading) + len(heading)
    following = re.search(r"^#{2,4} ", markdown[start:], re.MULTILINE)
    return markdown[start : start + following.start()] if following else markdown[start:]


def _rows(markdown: str) -> dict[str, list[str]]:
    """Table rows of a Markdown fragment keyed by their first cell (backticks removed)."""
    rows = {}
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            rows[cells[0].replace("`", "")] = cells[1:]
    return rows


@pytest.fixture(scope="module")
def cli_markdown() -> str:
    return cli_reference()


def test_cli_reference_has_every_command_of_the_click_tree(cli_markdown):
    from hf_efftrain.cli import app

    paths = _click_paths(typer.main.get_command(app), "hf-efftrain")
    assert len(paths) >= 12 and "hf-efftrain cmd fit" in paths and "hf-efftrain mat summary" in paths
    headings = set(re.findall(r"^#{2,4} `([^`]+)`$", cli_markdown, re.MULTILINE))
    assert headings == set(paths)


def test_cli_reference_lists_every_option_of_a_command_with_default_and_help(cli_markdown):
    from hf_efftrain.cli import app

    root = typer.main.get_command(app)
    ctx = root.context_class(root, info_name="hf-efftrain")
    command = root.get_command(ctx, "transfer")
    section = _section(cli_markdown, "## `hf-efftrain transfer`")
    assert "hf-efftrain transfer [OPTIONS] {SOURCE} {TARGET} {OUT}" in section
    rows = _rows(section)
    params = [p for p in command.get_params(ctx) if p.name != "help" and not getattr(p, "hidden", False)]
    assert len(params) >= 10
    for param in params:
        names = " / ".join([*param.opts, *param.secondary_opts])  # a flag pair shares one row
        key = names if param.param_type_name == "option" else param.name.upper()
        assert key in rows, key
        assert param.help and param.help in rows[key][-1]
    assert rows["--steps"][:2] == ["`int`", "`20`"] and rows["--method"][1] == "`fgmt`"
    assert rows["SOURCE"][1] == "yes"


def test_a_new_command_appears_without_touching_the_docs():
    from hf_efftrain.cli import app

    @app.command("zz-docs-probe")
    def probe(count: int = typer.Option(3, help="How many probes.")) -> None:
        """A command added only for this test."""

    try:
        section = _section(cli_reference(), "## `hf-efftrain zz-docs-probe`")
    finally:
        app.registered_commands.pop()
    assert "A command added only for this test." in section
    assert _rows(section)["--count"] == ["`int`", "`3`", "How many probes."]
    assert "zz-docs-probe" not in cli_reference()


def test_api_reference_lists_every_public_name_with_its_docstring():
    markdown = api_reference()
    for package in PACKAGES:
        module = importlib.import_module(package)
        assert f"## `{package}`" in markdown
        for name in module.__all__:
            entry = _section(markdown, f"### `{package}.{name}`")
            assert "*No docstring.*" not in entry, f"{package}.{name} has no docstring"
    assert "def estimate_lambda_max(" in markdown


def test_api_reference_lists_our_arguments_not_the_inherited_ones():
    from transformers import TrainingArguments

    from hf_efftrain import EfficientTrainingArguments

    entry = _section(api_reference(("hf_efftrain",)), "### `hf_efftrain.EfficientTrainingArguments`")
    rows = _rows(entry)
    for name in ("mat", "mat_every", "twa_trust", "cmd_modes", "growth_mask_ramp_steps", "snapshot_every"):
        assert name in rows, name
    assert rows["mat_every"][:2] == ["`float`", "`0.1`"] and "λmax" in rows["mat_every"][2]  # steps or a fraction
    assert not {"learning_rate", "output_dir", "seed"} & set(rows)
    assert "From `MATArguments`:" in entry and "From `TWAArguments`:" in entry
    ours = {f.name for f in dataclasses.fields(EfficientTrainingArguments)}
    ours -= {f.name for f in dataclasses.fields(TrainingArguments)}
    assert set(rows) - {"argument"} == ours
    assert "huggingface.co/docs/transformers" in entry


def test_arguments_table_follows_the_dataclass():
    from hf_efftrain.cmd.arguments import CMDArguments

    rows = _rows(arguments_table(CMDArguments))
    assert list(rows)[1:] == [f.name for f in CMDArguments.__dataclass_fields__.values()]
    assert rows["cmd_modes"][:2] == ["`int`", "`5`"]


def test_growth_benchmark_table_equals_the_json():
    result = json.loads((RESULTS / "growth.json").read_text())
    markdown = benchmark_tables("growth", RESULTS)
    ranking, rest = markdown.split("Spearman against the lag:")
    rows = _rows(ranking) | _rows(rest.split("Against scratch trained")[0])
    lag = str(result["lag_steps"])
    assert len(result["candidates"]) >= 7
    for name, figures in result["candidates"].items():
        name = name.replace("|", "\\|")  # escaped in the table cell
        assert float(rows[name][0]) == pytest.approx(figures["loss_step_0"], abs=5e-4)
        assert float(rows[name][1]) == pytest.approx(figures["loss_at_lags"][lag], abs=5e-4)
        assert float(rows[name][2]) == pytest.approx(figures["final_heldout_loss"], abs=5e-4)
    assert rows["spearman_lag_vs_final"] == [f"{result['spearman_lag_vs_final']:.3f}"]
    assert result["command"] in markdown
    long = result.get("growth_vs_scratch_long")
    if long:  # the grown models against scratch trained as long as base + growth
        long_rows = _rows(rest.split("Against scratch trained")[1].split("Targets:")[0])
        for name, figures in long["candidates"].items():
            cells = long_rows[name.replace("|", "\\|")]
            assert float(cells[1]) == pytest.approx(figures["minus_scratch_long_final"], abs=5e-4)
            assert cells[4] == (
                "–" if figures["flops_with_base_ratio"] is None else f"{figures['flops_with_base_ratio']:.3f}"
            )


def test_solar_table_equals_the_json_and_says_never_when_there_is_no_crossover(tmp_path):
    result = json.loads((RESULTS / "solar.json").read_text())
    rows = _rows(benchmark_tables("solar", RESULTS))
    for point in result["curve"]:
        original, upscaled, gap = (float(v) for v in rows[str(point["step"])][:3])
        assert original == pytest.approx(point["original"], abs=5e-5)
        assert upscaled == pytest.approx(point["upscaled"], abs=5e-5)
        assert gap == pytest.approx(point["upscaled"] - point["original"], abs=1e-4)
    result["crossover_step"] = None
    (tmp_path / "solar.json").write_text(json.dumps(result))
    rows = _rows(benchmark_tables("solar", tmp_path))
    assert next(v for k, v in rows.items() if k.startswith("crossover_step")) == ["never"]


def test_cmd_table_names_the_run_that_measured_the_embedded_keys_and_the_one_it_replaced(tmp_path):
    result = json.loads((RESULTS / "cmd.json").read_text())
    result["embedded_run"] = {
        "command": "python -m benchmarks.cmd --embedded-only",
        "date": "2026-12-03",
        "budget": "b",
    }
    result["embedded_previous_runs"] = [
        {
            "embedded_accuracy": 0.4321,
            "embedded_backward_flops_saved": 0.1,
            "embedded_backward_flops_saved_at_end": 0.2,
            "run": {"budget": "order movement"},
        }
    ]
    (tmp_path / "cmd.json").write_text(json.dumps(result))
    rows = _rows(benchmark_tables("cmd", tmp_path))
    assert rows["embedded keys measured by"][0].startswith("`python -m benchmarks.cmd --embedded-only`, 2026-12-03")
    assert (
        rows["replaced embedded run"][0].startswith("accuracy 0.4321, backward FLOPs saved 0.100")
        and "order movement" in rows["replaced embedded run"][0]
    )


def test_benchmark_table_changes_with_the_result_file(tmp_path):
    result = json.loads((RESULTS / "mat.json").read_text())
    result["arms"][0]["mat_accuracy"] = 0.123456
    result["budget_note"] = "a budget note written by this test"
    (tmp_path / "mat.json").write_text(json.dumps(result))
    markdown = benchmark_tables("mat", tmp_path)
    assert _rows(markdown)["heads (default)"][1] == "12.35%"
    assert "a budget note written by this test" in markdown and "python -m benchmarks.mat" in markdown


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "is missing"), ('{"arms": [', "is corrupt"), ("[1, 2]", "must hold a JSON object"), ("{}", "no key")],
)
def test_bad_result_files_fail_clearly(tmp_path, content, message):
    if content is not None:
        (tmp_path / "twa.json").write_text(content)
    with pytest.raises(DocsGenerationError, match=message) as err:
        benchmark_tables("twa", tmp_path)
    assert "twa.json" in str(err.value)


def test_markers_expand_only_alone_on_their_line():
    with pytest.raises(DocsGenerationError, match="no benchmark table is defined for 'nope'"):
        expand_markers("<!-- benchmark: nope -->", ROOT)
    with pytest.raises(DocsGenerationError, match="written <!-- benchmark: NAME -->"):
        expand_markers("<!-- benchmark -->", ROOT)
    quoted = "a `<!-- benchmark: nope -->` marker and <!-- an ordinary comment -->"
    assert expand_markers(quoted, ROOT) == quoted
    assert "| `cmd_modes` |" in expand_markers(
        "x\n  <!-- arguments: hf_efftrain.cmd.arguments.CMDArguments -->\n", ROOT
    )


def test_method_pages_use_generated_benchmark_tables():
    for page, result in METHOD_PAGES.items():
        text = (ROOT / "docs" / f"{page}.md").read_text()
        assert re.search(rf"^<!-- benchmark: {result} -->$", text, re.MULTILINE), page
    for page in ("mat", "twa", "cmd", "growth", "transfer"):
        assert "<!-- arguments: hf_efftrain." in (ROOT / "docs" / f"{page}.md").read_text(), page


def test_docstrings_become_markdown():
    doc = "Use :func:`fit_cmd` on ``Trajectory``. Example::\n\n    a = 1\n\n    b = 2\n\nAfter."
    assert docstring_markdown(doc) == (
        "Use `fit_cmd` on `Trajectory`. Example:\n\n```python\na = 1\n\nb = 2\n```\n\nAfter."
    )


def test_corrupt_result_fails_the_mkdocs_build_with_the_file_named(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# Site\n\n<!-- benchmark: cmd -->\n")
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "cmd.json").write_text('{"relative_reconstruction_error": ')
    hooks = ROOT / "hf_efftrain" / "docs_gen" / "hooks.py"
    (tmp_path / "mkdocs.yml").write_text(f"site_name: t\nstrict: true\nhooks:\n  - {hooks}\n")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "docs generation failed in index.md" in done.stderr and "cmd.json is corrupt" in done.stderr
    assert "Traceback" not in done.stderr
    shutil.rmtree(tmp_path / "benchmarks")
