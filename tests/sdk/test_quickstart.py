"""README's main job, as a user runs it: `facesearch quickstart` starts the three services,
indexes the sample photos of the face-model package, searches by one, runs a simulated session
until the target is shown, and stops every service."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from facesearch.local_stack import free_port_base

ROOT = Path(__file__).resolve().parents[2]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.slow
def test_quickstart_indexes_searches_finds_the_target_and_stops(tmp_path: Path) -> None:
    base = free_port_base()
    cli = Path(sys.executable).parent / "facesearch"
    result = subprocess.run(
        [str(cli), "quickstart", "--data-dir", str(tmp_path), "--port-base", str(base)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr[-3000:]
    assert out.count("SERVING") == 3
    indexed = next(line for line in out.splitlines() if " images, " in line and "faces" in line)
    images, faces = (int(indexed.split()[0]), int(indexed.split()[2]))
    assert images >= 100 and faces >= images // 2, indexed
    # The query photo is in the index, so its own face is the best match, at cosine ~1.
    top = out.split("top 5")[1].splitlines()[1].split()
    assert top[0] == "1." and float(top[1]) > 0.99
    assert "found " in out and "rounds of feedback" in out
    assert out.rstrip().endswith("services stopped")
    assert all(_port_free(p) for p in range(base, base + 3)), "a service is still listening"
