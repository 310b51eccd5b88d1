"""docker-compose.yml validates against the Compose specification (offline, bundled schema)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_file_matches_compose_spec() -> None:
    exe = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    result = subprocess.run(
        [exe, "--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_every_service_with_auth_on() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"embedder", "retriever", "personalizer", "redis", "triton", "prometheus"} <= set(
        services
    )
    for name in ("embedder", "retriever", "personalizer"):
        env = services[name]["environment"]
        assert env["FACESEARCH_AUTH_ENABLED"] == "true", name
        assert services[name]["command"] == [f"facesearch_server.{name}"]
    scrape = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = scrape["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == ["embedder:9101", "retriever:9102", "personalizer:9103"]
