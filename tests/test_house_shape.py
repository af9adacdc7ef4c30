"""The house's shape, kept by tests: every public definition documented, every method folder alike.

A new contributor should find the same few files in each method folder (``config.py``, ``cli.py``,
``README.md``, plus ``arguments.py`` and ``callback.py`` for a method that acts during training), one base for
the errors, and a docstring on anything they can import. These tests turn those habits into failures that list
what is missing.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from types import ModuleType

import pytest

import hf_efftrain
from hf_efftrain.errors import HfEfftrainError
from hf_efftrain.method_config import MethodConfig, argument_names
from hf_efftrain.trainer import EfficientTrainingArguments

ROOT = Path(hf_efftrain.__file__).parent

METHODS = ("mat", "growth", "twa", "cmd", "transfer")
METHOD_FILES = ("__init__.py", "config.py", "cli.py", "README.md")
# A method that acts during training also has its flags and the callback that schedules it.
TRAINING_FILES = ("arguments.py", "callback.py")
# The ``EfficientTrainingArguments`` prefix of each method with a training-time part, its config, and the flag
# that switches it on (a switch, not a knob of the config).
ARGUMENTS = {
    "mat": ("hf_efftrain.mat.config.MATConfig", {"mat"}),
    "twa": ("hf_efftrain.twa.config.TWAConfig", {"twa"}),
    "cmd": ("hf_efftrain.cmd.config.CMDConfig", {"cmd_online"}),
    "growth": ("hf_efftrain.growth.config.GrowthConfig", set()),
}


def _modules() -> list[ModuleType]:
    names = [info.name for info in pkgutil.walk_packages(hf_efftrain.__path__, "hf_efftrain.")]
    return [importlib.import_module(name) for name in ["hf_efftrain", *names]]


def _own_doc(obj: object) -> str | None:
    """The docstring written on ``obj`` itself: not inherited, and not the one ``@dataclass`` makes up."""
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    if inspect.isclass(obj) and dataclasses.is_dataclass(obj) and doc and doc.startswith(f"{obj.__name__}("):
        return None
    return doc.strip() if doc else None


def _members(cls: type) -> list[tuple[str, object]]:
    """Public methods and properties defined in ``cls`` itself (generated dataclass methods are private)."""
    found = []
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(member, property):
            found.append((name, member.fget))
        elif isinstance(member, staticmethod | classmethod):
            found.append((name, member.__func__))
        elif inspect.isfunction(member):
            found.append((name, member))
    return found


def public_definitions() -> list[tuple[str, object]]:
    """Every public class, function, method and property defined in hf_efftrain (pending packages aside)."""
    found = []
    for module in _modules():
        for name, obj in vars(module).items():
            defined_here = getattr(obj, "__module__", None) == module.__name__
            if name.startswith("_") or not defined_here or not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            found.append((f"{module.__name__}.{name}", obj))
            if inspect.isclass(obj):
                found += [(f"{module.__name__}.{name}.{member}", fn) for member, fn in _members(obj)]
    return found


def test_every_public_definition_has_a_docstring():
    definitions = public_definitions()
    missing = [name for name, obj in definitions if not _own_doc(obj)]
    assert len(definitions) > 300, "the walk found too little: a module failed to be listed"
    assert not missing, f"{len(missing)} public definitions without a docstring:\n" + "\n".join(missing)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_folder_has_the_same_files(method):
    folder = ROOT / method
    expected = METHOD_FILES + (TRAINING_FILES if method in ARGUMENTS else ())
    assert [name for name in expected if not (folder / name).is_file()] == []
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert f"docs/{method}.md" in readme, "the folder README links the method's docs page"
    for section in ("Claim", "Knobs", "Caveats"):
        assert re.search(rf"^\*\*{section}", readme, re.MULTILINE), f"{method}/README.md has no **{section}**"


@pytest.mark.parametrize("prefix", ARGUMENTS)
def test_every_method_argument_is_a_config_knob(prefix):
    """``<prefix>_*`` flags map onto config fields by name: a flag the mapping would drop fails here."""
    dotted, switches = ARGUMENTS[prefix]
    module, name = dotted.rsplit(".", 1)
    config = getattr(importlib.import_module(module), name)
    assert issubclass(config, MethodConfig)
    flags = {f.name for f in dataclasses.fields(EfficientTrainingArguments) if f.name.split("_")[0] == prefix}
    mapped = set(argument_names(EfficientTrainingArguments, prefix, config).values())
    assert flags - switches == mapped and mapped


def test_every_package_error_derives_from_one_value_error_in_errors_py():
    outside = [
        f"{module.__name__}.{name}"
        for module in _modules()
        for name, obj in vars(module).items()
        if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == module.__name__
        if module.__name__ != "hf_efftrain.errors"
    ]
    assert outside == [], "errors belong in hf_efftrain/errors.py"
    assert issubclass(HfEfftrainError, ValueError)


def test_no_module_shadows_the_standard_logging_module():
    """The package's logging helpers live in ``hf_efftrain/log.py``: a ``logging.py`` would shadow the stdlib."""
    assert not (ROOT / "logging.py").exists()
    assert [p for p in ROOT.rglob("*.py") if "hf_efftrain.logging" in p.read_text(encoding="utf-8")] == []
