"""Optional dependencies: a missing extra ends with one line that names it, through the CLI too."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from hf_efftrain.errors import HfEfftrainError, MissingExtraError
from hf_efftrain.extras import pyplot, require

ROOT = Path(__file__).resolve().parents[1]


def test_missing_module_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail as if not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'hf-efftrain\[plots\]'") as caught:
        pyplot()
    assert isinstance(caught.value, HfEfftrainError) and isinstance(caught.value, ImportError)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(MissingExtraError, match=r"hf-efftrain\[data\]"):
        require("pandas", extra="data")


def test_cli_reports_a_missing_extra_on_one_line(run_cli, tmp_path, monkeypatch):
    history = {"units": ["L0.H0"], "history": [{"step": 2, "lambda": [1.0], "active": [True]}], "measurements": 1}
    history.update(measure_seconds=0.1, flops_full=1.0, flops_done=1.0)
    (tmp_path / "mat_history.json").write_text(json.dumps(history))  # a valid file: the plot is what fails
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, _, err = run_cli(["mat", "heatmap", str(tmp_path)])
    assert code == 2 and "hf-efftrain[plots]" in err and "Traceback" not in err


def test_heavy_optional_libraries_are_extras_and_setup_installs_them():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    for name in ("matplotlib", "pandas", "peft"):
        assert name not in core
    extras = project["optional-dependencies"]
    assert any(d.startswith("matplotlib") for d in extras["plots"]) and any(
        d.startswith("pandas") for d in extras["data"]
    )
    assert '".[data,plots,lora,dev]"' in (ROOT / "scripts" / "setup.sh").read_text()
