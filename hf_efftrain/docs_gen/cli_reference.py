"""The CLI reference, generated from the real click command tree of ``hf-efftrain``.

Typer builds a click command tree (``typer.main.get_command``); walking it recursively gives every command and
sub-command with its usage line, help text and parameters, so a command added anywhere (a method's sub-app,
``report``...) appears in the docs without touching them. Example::

    print(cli_reference())           # Markdown
    command_paths()                  # ['hf-efftrain', 'hf-efftrain cmd', 'hf-efftrain cmd fit', ...]
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from hf_efftrain.docs_gen.markdown import cell, code, table

PROG = "hf-efftrain"


def root_command() -> Any:
    """The click command of the ``hf-efftrain`` typer app."""
    import typer

    from hf_efftrain.cli import app

    return typer.main.get_command(app)


def walk(command: Any = None, parent: Any = None, name: str = PROG) -> Iterator[tuple[Any, Any]]:
    """Yield ``(command, context)`` for ``command`` and all its sub-commands, depth first, sorted by name."""
    command = root_command() if command is None else command
    ctx = command.context_class(command, info_name=name, parent=parent)
    yield command, ctx
    if hasattr(command, "list_commands"):  # a group
        for sub_name in sorted(command.list_commands(ctx)):
            sub = command.get_command(ctx, sub_name)
            if sub is not None and not getattr(sub, "hidden", False):
                yield from walk(sub, ctx, sub_name)


def command_paths() -> list[str]:
    """Every command path of the CLI, e.g. ``hf-efftrain mat summary``."""
    return [ctx.command_path for _, ctx in walk()]


def cli_reference() -> str:
    """Markdown for every command: a heading with its path, usage, help, arguments and options."""
    return "\n\n".join(_command_section(command, ctx) for command, ctx in walk())


def _command_section(command: Any, ctx: Any) -> str:
    depth = min(ctx.command_path.count(" ") + 2, 4)
    usage = ctx.get_usage().removeprefix("Usage:").strip()
    parts = [f"{'#' * depth} `{ctx.command_path}`", "", f"```text\n{usage}\n```"]
    if command.help:
        parts += ["", inspect.cleandoc(command.help).replace("\b\n", "")]
    help_option = command.get_help_option(ctx)
    params = [p for p in command.get_params(ctx) if p is not help_option and not getattr(p, "hidden", False)]
    arguments = [p for p in params if p.param_type_name == "argument"]
    options = [p for p in params if p.param_type_name == "option"]
    if arguments:
        rows = [[code(p.name.upper()), code(_type(p, ctx)), _required(p), cell(p.help or "")] for p in arguments]
        parts += ["", "**Arguments**", "", table(["argument", "type", "required", "help"], rows)]
    if options:
        rows = [[_option_names(p), code(_type(p, ctx)), _default(p), cell(p.help or "")] for p in options]
        parts += ["", "**Options**", "", table(["option", "type", "default", "help"], rows)]
    if hasattr(command, "list_commands"):
        subs = sorted(command.list_commands(ctx))
        parts += ["", "Sub-commands: " + ", ".join(code(f"{ctx.command_path} {s}") for s in subs) + "."]
    return "\n".join(parts)


def _type(param: Any, ctx: Any) -> str:
    """Typer's own display (``<int>``, ``<path>``, choices); click's type name for plain click parameters."""
    if hasattr(param, "display_type"):
        return param.display_type(ctx).strip("<>")
    return param.type.name


def _option_names(param: Any) -> str:
    names = [*param.opts, *param.secondary_opts]
    return " / ".join(code(n) for n in names)


def _required(param: Any) -> str:
    return "yes" if param.required else f"no (default {code(repr(param.default))})"


def _default(param: Any) -> str:
    if param.required:
        return "required"
    if param.default is None or (getattr(param, "is_flag", False) and param.default is False):
        return "–"
    value = param.default
    if isinstance(value, list | tuple):
        value = " ".join(map(str, value))
    return code(value)
