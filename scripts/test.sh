#!/usr/bin/env bash
# Install (scripts/install.sh), lint, check the generated stubs, and run every test, slow ones
# included. Needs Redis on 127.0.0.1:6379 (started here when nothing answers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  echo "starting redis-server on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null && break; sleep 0.1; done
fi
ruff check .
ruff format --check .
# Two workers (FACESEARCH_TEST_WORKERS), each taking whole test files (--dist loadfile), so a
# module's fixtures (its services, its tiny models) start once: the tests mostly wait on service
# subprocesses and the open_clip children, and one pytest process left a core idle.
python -m pytest -n "${FACESEARCH_TEST_WORKERS:-2}" --dist loadfile "$@"
