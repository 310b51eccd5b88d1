#!/usr/bin/env bash
# The GPU bench (bench/gpu/README.md): what this host has, then faces/s, photos/s, HNSW build
# time and search q/s through the services, each beside the bare library, in one run.
#   bench/gpu/run.sh                     # on a GPU host; add --json figures.json to keep them
#   bench/gpu/run.sh --cpu-dry-run       # anywhere: the same code on the CPU at tiny sizes
# Other flags: python -m bench.gpu.bench_gpu --help
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x .venv/bin/python ]; then
  . .venv/bin/activate
fi
exec python -m bench.gpu.bench_gpu "$@"
