#!/usr/bin/env bash
# The main job: set up, then fine-tune the real MiniLM on Rotten Tomatoes with EfficientTrainer and MAT, write the
# run's HTML report and print a summary. Extra arguments go to examples/demo.py (examples/finetune.py's flags),
# e.g. --max_steps 50.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY="${PYTHON:-$(command -v python3 || command -v python)}"
exec "$PY" examples/demo.py "$@"
