"""Start-up stays light: importing the package or asking the CLI for help loads no heavy library.

Each check runs in a fresh interpreter, since this test process has long imported torch itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "datasets", "pandas", "sympy", "matplotlib", "scipy", "peft")

# Prints the heavy modules loaded after running `code` (stdout is the JSON list, on the last line).
PROBE = """
import json, sys
{code}
print(json.dumps([name for name in {heavy!r} if name in sys.modules]))
"""

# `hf-efftrain --help` and `hf-efftrain <path> --help` for every command and group of the CLI.
HELP_ALL = """
import contextlib, io, typer
from hf_efftrain.cli import app, main

def paths(command, prefix):
    yield prefix
    for name, sub in getattr(command, "commands", {}).items():
        yield from paths(sub, [*prefix, name])

helped = 0
for path in paths(typer.main.get_command(app), []):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main([*path, "--help"])
    assert "Usage:" in out.getvalue(), (path, out.getvalue())
    helped += 1
assert helped > 10, helped
"""


def loaded_after(code: str) -> list[str]:
    """The heavy modules a fresh interpreter holds after running ``code`` with this worktree first on the path."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(code=code, heavy=HEAVY)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_package_loads_nothing_heavy():
    assert loaded_after("import hf_efftrain, hf_efftrain.mat, hf_efftrain.twa, hf_efftrain.cmd") == []


def test_cli_import_and_every_help_load_nothing_heavy():
    assert loaded_after("import hf_efftrain.cli") == []
    assert loaded_after(HELP_ALL) == []


def test_public_names_load_on_first_use():
    code = "from hf_efftrain import EfficientTrainer; assert EfficientTrainer.__name__ == 'EfficientTrainer'"
    loaded = loaded_after(code)
    assert "torch" in loaded and "transformers" in loaded


def test_every_public_name_resolves_and_dir_lists_it():
    import hf_efftrain
    from hf_efftrain.docs_gen.api_reference import PACKAGES

    for package in PACKAGES:
        module = __import__(package, fromlist=["__all__"])
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{package}.{name}"
            assert name in dir(module)
    assert hf_efftrain.EfficientTrainer.__module__ == "hf_efftrain.trainer"


def test_function_keeps_its_name_over_a_submodule_of_the_same_spelling():
    import hf_efftrain.twa.collect  # noqa: F401  binds the submodule on the package, as the import system does
    from hf_efftrain import twa
    from hf_efftrain.twa.train import collect

    assert twa.collect is collect
