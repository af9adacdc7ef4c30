"""mkdocs hook (``hooks:`` in ``mkdocs.yml``): expand the generation markers of every page at build time.

mkdocs loads this file by path, so the repository that holds ``mkdocs.yml`` is put first on ``sys.path``:
the docs are always generated from the checkout being built, not from another installed copy.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mkdocs.exceptions import PluginError  # noqa: E402

from hf_efftrain.docs_gen.markers import expand_markers  # noqa: E402
from hf_efftrain.errors import HfEfftrainError  # noqa: E402


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Replace the markers of one page; a generator error aborts the build with the page and the reason."""
    root = Path(config.config_file_path).resolve().parent
    try:
        return expand_markers(markdown, root)
    except HfEfftrainError as err:
        raise PluginError(f"docs generation failed in {page.file.src_path}: {err}") from err
