#!/usr/bin/env bash
# The main job: set up, then fine-tune the real MiniLM on Rotten Tomatoes with EfficientTrainer.
# Extra arguments go to examples/finetune.py (HfArgumentParser flags), e.g. --max_steps 50.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY="${PYTHON:-$(command -v python3 || command -v python)}"
exec "$PY" examples/finetune.py "$@"
