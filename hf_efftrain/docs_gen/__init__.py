"""Generated parts of the docs site: CLI reference, API reference, knob tables and benchmark tables.

The Markdown pages hold markers that :func:`expand_markers` replaces at build time (``hooks.py`` is the mkdocs
hook that calls it), so the reference pages follow the code and the benchmark tables follow
``benchmarks/results/*.json``: nothing can drift. Each generator is a plain function, testable alone::

    from hf_efftrain.docs_gen import expand_markers
    text = expand_markers("<!-- benchmark: mat -->", root=Path("."))
"""

from hf_efftrain.docs_gen.api_reference import api_reference
from hf_efftrain.docs_gen.arguments import arguments_table
from hf_efftrain.docs_gen.benchmarks import benchmark_tables, load_result
from hf_efftrain.docs_gen.cli_reference import cli_reference, command_paths
from hf_efftrain.docs_gen.markers import expand_markers
from hf_efftrain.errors import DocsGenerationError

__all__ = [
    "DocsGenerationError",
    "api_reference",
    "arguments_table",
    "benchmark_tables",
    "cli_reference",
    "command_paths",
    "expand_markers",
    "load_result",
]
