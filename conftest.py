"""Suite-wide pytest set-up for tests/ and bench/ (the benches' own self-tests): the repository
root is importable (so ``harness``, what tests and benches share, is found from every area), and
``harness.ci_strict`` turns skips into failures under CI."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

pytest_plugins = ["harness.ci_strict"]
