"""Where the real face images are: ``../shared/data`` beside the repository.

A user's clone has no such folder, so tests that need it skip with a clear reason; under CI
(``CI=true``) a missing folder fails instead, so CI cannot pass by skipping.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """../shared/data as seen from the repository, or None where it is absent."""
    path = REPO_ROOT.parent / "shared" / "data"
    return path if path.is_dir() else None


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def shared_data(subdir: str) -> Path:
    """``../shared/data/<subdir>``; where it is absent the calling test skips, saying why (and
    under CI that skip fails the run, harness/ci_strict.py)."""
    import pytest  # only tests call this; the harness's other users need no pytest

    root = shared_data_dir()
    if root is None or not (root / subdir).exists():
        pytest.skip(
            f"../shared/data/{subdir} is absent (a user's clone): the labelled real faces "
            "live there in CI"
        )
    return root / subdir
