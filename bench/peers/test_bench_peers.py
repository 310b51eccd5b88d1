"""bench/peers end to end at a tiny size: every system through the real bench (its own worker
process, a real retriever for facesearch), and the figures it prints are whole and sane.

The peers come with the ``peers`` extra (scripts/install.sh installs it, so CI runs them all);
on a clone without it the peer test skips, naming what is missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.peers.bench_peers import SYSTEMS, missing, table, verdicts

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "--n=1500",
    "--queries=60",
    "--tune-queries=60",
    "--synthetic",  # no ../shared/data or gallery build needed: this checks the bench, not speed
    "--duration=0",
    "--min-samples=5",
    "--warmup=1",
    "--deletes=5",
    "--threads=1",
    "--build-timeout=120",
    "--system-timeout=300",
]


def run_bench(tmp_path: Path, systems: list[str]) -> tuple[dict, str]:
    out = tmp_path / "figures.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.peers.bench_peers",
            *TINY,
            f"--systems={','.join(systems)}",
            "--require-all",
            f"--json={out}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def check_figures(r: dict) -> None:
    assert "error" not in r, r
    assert r["ingest_per_s"] > 0 and r["ready_s"] >= r["ingest_s"] > 0
    # Tuned on the held-out queries to recall 0.95 less one standard error: the scored ones
    # (60 synthetic queries) land near it.
    assert r["tuning"][-1]["recall"] - r["tuning"][-1]["se"] >= 0.95 or r["width"] == 2048
    assert r["recall"] >= 0.85, r
    assert [(x["batch"], x["clients"]) for x in r["loads"]] == [(1, 1), (1, 8), (64, 1)]
    for load in r["loads"]:
        assert load["qps"] > 0 and load["latency"]["n"] >= 5
    assert r["rss_total_bytes"] > 0
    assert r["deleted"] >= 1 and r["deleted_returned"] == 0, r
    assert r["reopen_ready_s"] >= r["reopen_first_answer_s"] >= 0


@pytest.mark.slow
def test_facesearch_runs_end_to_end(tmp_path: Path) -> None:
    figures, stdout = run_bench(tmp_path, ["facesearch"])
    (r,) = figures["results"]
    check_figures(r)
    assert r["width_name"] == "ef_search" and "own_default_recall" in r
    assert "| facesearch |" in stdout


@pytest.mark.slow
def test_peers_run_end_to_end_beside_facesearch(tmp_path: Path) -> None:
    absent = {s: missing(s) for s in SYSTEMS if missing(s)}
    if absent:
        pytest.skip(f"peer stores not installed ({absent}): pip install -e '.[peers]'")
    figures, stdout = run_bench(tmp_path, list(SYSTEMS))
    results = figures["results"]
    assert [r["system"] for r in results] == list(SYSTEMS)
    for r in results:
        check_figures(r)
        assert f"| {r['system']} |" in stdout
    # Each target line names facesearch and the peer it is judged against.
    lines = verdicts(results, 0.95)
    assert any("batch 64" in x and "hnswlib" in x for x in lines)
    assert any("batch-1 p50 latency" in x for x in lines)


def test_table_and_verdicts_from_figures() -> None:
    def fig(name: str, q64: float, q8: float, p50: float) -> dict:
        lat = {"p50_ms": p50, "p99_ms": None, "max_ms": 2 * p50, "n": 50}
        return {
            "system": name,
            "width_name": "ef",
            "width": 64,
            "held_out_recall": 0.96,
            "recall": 0.955,
            "ingest_per_s": 1000.0,
            "ready_s": 2.0,
            "rss_bytes": 2**20,
            "reopen_first_answer_s": 0.5,
            "reopen_ready_s": 0.5,
            "deleted": 5,
            "deleted_returned": 0,
            "loads": [
                {"batch": 1, "clients": 1, "qps": 100.0, "latency": lat},
                {"batch": 1, "clients": 8, "qps": q8, "latency": lat},
                {"batch": 64, "clients": 1, "qps": q64, "latency": lat},
            ],
        }

    fs = fig("facesearch", 3000, 500, 1.5)
    peer = fig("hnswlib", 2000, 900, 0.2)
    lines = verdicts([fs, peer], 0.95)
    assert "met: batch 64, facesearch 3,000 q/s vs hnswlib 2,000 (1.50x)" in lines
    assert "MISSED: 8 clients, facesearch 500 q/s vs hnswlib 900 (0.56x)" in lines
    assert any(x.startswith("MISSED: batch-1 p50") and "+1.30 ms" in x for x in lines)
    text = table([fs, peer, {"system": "lancedb", "error": "boom"}])
    rows = text.splitlines()
    assert len(rows) == 5 and all(r.count("|") == rows[0].count("|") for r in rows)
    assert "max 3.00 (50)" in text  # too few calls for a p99: the max and n instead
