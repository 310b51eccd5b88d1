"""Start a facesearch service as a real subprocess, wait until it is SERVING, stop it.

The process binds port 0 and we read the port it got from its "serving" log line, so parallel
test runs never race for a port. Its log goes to a file that failures quote.

    with running_service("retriever", env={"FACESEARCH_RETRIEVER_DATA_DIR": str(tmp)}) as svc:
        stub = RetrieverStub(svc.channel())
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

if TYPE_CHECKING:
    from facesearch.settings import ClientSettings

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("embedder", "retriever", "personalizer")


def free_port() -> int:
    """A TCP port free right now on 127.0.0.1 (for servers that cannot report their own)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServiceProcess:
    """A running service process and how to reach it."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    log_path: Path
    tls_ca: bytes | None = None
    tls_host: str = "localhost"
    # (certificate, key) PEM the test client presents when the service requires mTLS.
    tls_client: tuple[bytes, bytes] | None = None
    _channels: list[grpc.Channel] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def channel(self) -> grpc.Channel:
        """A sync channel to the service (TLS when it serves TLS); closed by stop()."""
        if self.tls_ca:
            # The test certificate names "localhost"; we dial the IP the server bound.
            cert, key = self.tls_client or (None, None)
            ch = grpc.secure_channel(
                self.address,
                grpc.ssl_channel_credentials(self.tls_ca, key, cert),
                options=[("grpc.ssl_target_name_override", self.tls_host)],
            )
        else:
            ch = grpc.insecure_channel(self.address)
        self._channels.append(ch)
        return ch

    def health(self, service: str = "", timeout: float = 5.0) -> int:
        stub = health_pb2_grpc.HealthStub(self.channel())
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        return int(reply.status)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_records(self) -> list[dict[str, object]]:
        """The JSON log lines (non-JSON lines, e.g. a traceback, are skipped)."""
        out = []
        for line in self.log().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def signal(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} did not exit within {timeout}s; log:\n{self.log()[-3000:]}"
            ) from None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, wait, SIGKILL if it hangs. Returns the exit code."""
        for ch in self._channels:
            ch.close()
        self._channels.clear()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


def service_env(name: str, env: Mapping[str, str] | None, metrics: bool) -> tuple[dict, int]:
    """The child's environment: ours, minus FACESEARCH_* (a developer's shell must not leak into
    tests), plus the overrides; port 0 and metrics on a free port or off."""
    child = {k: v for k, v in os.environ.items() if not k.startswith("FACESEARCH_")}
    prefix = f"FACESEARCH_{name.upper()}_"
    metrics_port = free_port() if metrics else 0
    child.update(
        {
            f"{prefix}PORT": "0",
            f"{prefix}METRICS_PORT": str(metrics_port),
            f"{prefix}LOG_FORMAT": "json",
            # Quick drain so a test's final stop is quick; tests of the drain set their own.
            f"{prefix}SHUTDOWN_GRACE_S": "5",
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    child["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    child.update(env or {})
    return child, metrics_port


def start_service(
    name: str,
    env: Mapping[str, str] | None = None,
    *,
    module: str | None = None,
    metrics: bool = False,
    tls_ca: bytes | None = None,
    tls_client: tuple[bytes, bytes] | None = None,
    timeout: float = 90.0,
    log_dir: Path | None = None,
) -> ServiceProcess:
    """Start ``python -m services.<name>`` (or ``module``, a test service run under the config
    name ``name``) and return once it reports SERVING over gRPC health."""
    child_env, metrics_port = service_env(name, env, metrics)
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix=f"facesearch-{name}-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    log_file = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", module or f"facesearch_server.{name}"],
        cwd=REPO_ROOT,
        env=child_env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    log_file.close()
    svc = ServiceProcess(
        name, proc, 0, metrics_port, log_path, tls_ca=tls_ca, tls_client=tls_client
    )
    deadline = time.monotonic() + timeout
    try:
        while svc.port == 0:
            if proc.poll() is not None:
                raise AssertionError(
                    f"{name} exited with {proc.returncode} before serving; "
                    f"log:\n{svc.log()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{name} not serving after {timeout}s; log:\n{svc.log()[-3000:]}"
                )
            for record in svc.log_records():
                if record.get("msg") == "serving":
                    svc.port = int(str(record["address"]).rsplit(":", 1)[1])
                    if metrics:
                        svc.metrics_port = int(record.get("metrics_port", metrics_port))  # type: ignore[arg-type]
                    break
            else:
                time.sleep(0.05)
        status = svc.health(timeout=max(1.0, deadline - time.monotonic()))
        if status != health_pb2.HealthCheckResponse.SERVING:
            raise AssertionError(f"{name} health is {status}, not SERVING")
    except BaseException:
        svc.stop(timeout=5)
        raise
    return svc


@contextlib.contextmanager
def running_service(
    name: str, env: Mapping[str, str] | None = None, **kwargs
) -> Iterator[ServiceProcess]:
    """``start_service`` as a context manager that always stops the process."""
    svc = start_service(name, env, **kwargs)
    try:
        yield svc
    finally:
        svc.stop()


def scrape_metrics(port: int, timeout: float = 5.0) -> str:
    """The Prometheus text exposition of a service's metrics port."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as resp:
        return resp.read().decode()


def metric_value(text: str, name: str, **labels: str) -> float:
    """One sample's value from a scrape (0 when absent, as a counter not yet touched)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def start_suite(
    tmp: Path, metrics: bool = False, env: Mapping[str, str] | None = None
) -> dict[str, ServiceProcess]:
    """embedder, retriever and personalizer as three processes, the personalizer pointed at the
    other two. Data under ``tmp``. Stop them with ``stop_suite``."""
    started: dict[str, ServiceProcess] = {}
    try:
        for name in SERVICES:
            child = {f"FACESEARCH_{name.upper()}_DATA_DIR": str(tmp / name)}
            if name == "personalizer":
                child["FACESEARCH_PERSONALIZER_EMBEDDER_ADDRESS"] = started["embedder"].address
                child["FACESEARCH_PERSONALIZER_RETRIEVER_ADDRESS"] = started["retriever"].address
            child.update(env or {})
            started[name] = start_service(name, child, metrics=metrics, log_dir=tmp)
    except BaseException:
        stop_suite(started)
        raise
    return started


def suite_settings(
    services: Mapping[str, ServiceProcess], timeout_s: float = 60, **kw: object
) -> ClientSettings:
    """The SDK's settings for a suite started by ``start_suite`` (``kw`` overrides fields)."""
    from facesearch.settings import ClientSettings  # late: most harness users need no SDK

    return ClientSettings(
        embedder_address=services["embedder"].address,
        retriever_address=services["retriever"].address,
        personalizer_address=services["personalizer"].address,
        timeout_s=timeout_s,
    ).replace(**kw)


def stop_suite(services: Mapping[str, ServiceProcess]) -> None:
    for svc in reversed(list(services.values())):
        svc.stop()
