"""The stale-stubs check: protos/facesearch_contract/v1/ must equal what protos/generate.py makes
now."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness.service_process import REPO_ROOT


def test_generated_stubs_match_the_protos(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "protos" / "generate.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    fresh = tmp_path / "facesearch_contract" / "v1"
    committed = REPO_ROOT / "protos" / "facesearch_contract" / "v1"
    names = lambda d: {p.name for p in d.iterdir() if p.is_file()}  # noqa: E731
    assert names(fresh), "generate.py wrote nothing"
    assert names(committed) - {"__pycache__"} == names(fresh), (
        "protos/facesearch_contract/v1 has other files than generate.py makes: "
        "run python protos/generate.py"
    )
    stale = [
        n for n in sorted(names(fresh)) if (fresh / n).read_bytes() != (committed / n).read_bytes()
    ]
    assert not stale, f"stale generated stubs {stale}: run python protos/generate.py"
