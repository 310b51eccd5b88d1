"""The Grafana dashboard is valid JSON and every facesearch metric it charts is one the
services actually export (a renamed metric must not leave a silently empty panel)."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy/grafana/facesearch-dashboard.json"


def _exported_metric_names() -> set[str]:
    names = set()
    for source in (ROOT / "services").rglob("*.py"):
        for name in re.findall(r"[\"'](facesearch_[a-z_]+)[\"']", source.read_text()):
            names.add(name)
    return names


def test_every_charted_facesearch_metric_is_exported() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    charted = {m for e in exprs for m in re.findall(r"facesearch_[a-z_]+", e)}
    exported = _exported_metric_names()
    # Histograms and counters are charted through their _bucket / _total series.
    missing = {
        m
        for m in charted
        if m not in exported and re.sub(r"_(bucket|total|sum|count)$", "", m) not in exported
    }
    assert not missing, f"charted but never exported: {sorted(missing)}"


def test_dashboard_covers_what_ops_asked_for() -> None:
    titles = " ".join(p["title"].lower() for p in json.loads(DASHBOARD.read_text())["panels"])
    for topic in ("rpc rate", "errors", "latency", "index size", "feedback rounds", "triton queue"):
        assert topic in titles, topic
