"""bench/gpu end to end in its CPU dry run (``run.sh --cpu-dry-run``): the same code a GPU host
runs, at tiny sizes, so a change that breaks the GPU bench fails here first. It checks that the
bench reports what is installed, prints every section with the service beside the bare
library, and says "not measured" (with why) for what this host lacks; not speed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(900)  # two service starts and two index builds on a loaded box
def test_cpu_dry_run_reports_every_section_beside_the_bare_library(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    proc = subprocess.run(
        [str(REPO / "bench" / "gpu" / "run.sh"), "--cpu-dry-run", f"--json={out}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] is True
    for key in ("nvidia-smi", "onnxruntime", "faiss", "tritonserver", "torch"):
        assert report["installed"][key], key
    measured = [r for r in report["figures"] if "not_measured" not in r]
    skipped = [r for r in report["figures"] if "not_measured" in r]
    for section in ("faces/s", "photos/s", "faiss build", "faiss search"):
        rows = [r for r in measured if r["section"] == section]
        assert any(str(r["what"]).startswith("bare") for r in rows), section
        service = [r for r in rows if not str(r["what"]).startswith("bare")]
        assert service and all(r["value"] > 0 and r["vs_bare"] > 0 for r in service), section
    # Three search shapes per index kind, each with both sides.
    assert len([r for r in measured if r["section"] == "faiss search"]) == 12
    # What this host lacks is said, not skipped in silence.
    assert all(r["not_measured"] for r in skipped)
    if "not on PATH" in report["installed"]["tritonserver"]:
        assert any("triton" in str(r["what"]) for r in skipped)
    assert "[installed] onnxruntime" in proc.stdout and "x bare" in proc.stdout
