#!/usr/bin/env bash
# README's first command: install into .venv, then run the main job on the embedded default
# (three services, index the sample photos, search, a simulated interactive session).
# Extra arguments go to `facesearch quickstart` (e.g. --keep-running).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/facesearch quickstart "$@"
