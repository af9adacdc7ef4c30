"""Expand the docs' generation markers: ``<!-- cli-reference -->``, ``<!-- api-reference -->``,
``<!-- arguments: module.Class -->`` and ``<!-- benchmark: name -->``, each alone on its line.

A marker is an HTML comment, so a page still reads sensibly on GitHub where nothing expands it. Any other
HTML comment is left alone; a marker whose generator fails stops the build with the page and the reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from hf_efftrain.errors import DocsGenerationError

# A marker stands alone on its line, so one quoted in prose or in code (`<!-- benchmark: name -->`) stays as is.
MARKER = re.compile(
    r"^[ \t]*<!--\s*(cli-reference|api-reference|arguments|benchmark)\s*(?::\s*([\w.+-]+))?\s*-->[ \t]*$",
    re.MULTILINE,
)


def expand_markers(markdown: str, root: Path) -> str:
    """Replace every marker of ``markdown`` by its generated Markdown; ``root`` is the repository root. Example::

    expand_markers("## Benchmark\\n\\n<!-- benchmark: mat -->", Path("."))
    """
    return MARKER.sub(lambda match: _expand(match.group(1), match.group(2), root), markdown)


def _expand(kind: str, argument: str | None, root: Path) -> str:
    from hf_efftrain.docs_gen.api_reference import api_reference
    from hf_efftrain.docs_gen.arguments import arguments_table_for
    from hf_efftrain.docs_gen.benchmarks import benchmark_tables
    from hf_efftrain.docs_gen.cli_reference import cli_reference

    generators: dict[str, tuple[bool, Callable[..., str]]] = {
        "cli-reference": (False, lambda: cli_reference()),
        "api-reference": (False, lambda: api_reference()),
        "arguments": (True, lambda name: arguments_table_for(name)),
        "benchmark": (True, lambda name: benchmark_tables(name, root / "benchmarks" / "results")),
    }
    needs_argument, generate = generators[kind]
    if needs_argument != (argument is not None):
        usage = f"<!-- {kind}: NAME -->" if needs_argument else f"<!-- {kind} -->"
        raise DocsGenerationError(f"marker {kind!r} is written {usage}")
    return generate(argument) if needs_argument else generate()
