"""The three services on this machine as child processes, on the embedded defaults:
embedder with its local (in-process) backend, retriever with in-process shards under a data
directory, personalizer with its embedded Redis. What ``facesearch serve`` runs.

    with LocalStack(data_dir=Path("data")) as stack:   # returns once all three are SERVING
        ...                                              # ClientSettings: stack.settings()

Each child gets its port and the others' addresses through FACESEARCH_<SERVICE>_* variables
and logs to ``<data_dir>/logs/<service>.log``. Stopping sends SIGTERM (the services drain
in-flight calls) and kills only what does not exit within the grace period.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from facesearch.errors import FacesearchError
from facesearch.settings import ClientSettings

SERVICES = ("embedder", "retriever", "personalizer")
DEFAULT_PORTS = {"embedder": 50051, "retriever": 50052, "personalizer": 50053}
DEFAULT_METRICS_PORTS = {"embedder": 9101, "retriever": 9102, "personalizer": 9103}


class StackError(FacesearchError):
    pass


def free_port_base(count: int = len(SERVICES), start: int = 20_000, stop: int = 40_000) -> int:
    """A port P such that P .. P+count-1 are all free now on 127.0.0.1 (for a stack whose
    services sit on consecutive ports, as ``--port-base`` lays them out)."""
    for base in range(start, stop - count, count + 4):
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise StackError(f"no {count} consecutive free ports between {start} and {stop}")


@dataclass
class LocalStack:
    data_dir: Path = Path("data")
    host: str = "127.0.0.1"
    ports: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    # None: each service's default metrics port; 0 for a service turns its metrics off.
    metrics_ports: Mapping[str, int] | None = None
    ready_timeout_s: float = 180.0
    stop_grace_s: float = 15.0
    # Extra FACESEARCH_* settings for the children (e.g. a config file, auth).
    env: Mapping[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, init=False)

    def address(self, service: str) -> str:
        return f"{self.host}:{self.ports[service]}"

    def settings(self, **overrides: object) -> ClientSettings:
        return ClientSettings(
            embedder_address=self.address("embedder"),
            retriever_address=self.address("retriever"),
            personalizer_address=self.address("personalizer"),
        ).replace(**overrides)

    def log_path(self, service: str) -> Path:
        return self.data_dir / "logs" / f"{service}.log"

    def child_env(self, service: str) -> dict[str, str]:
        env = dict(os.environ)
        prefix = f"FACESEARCH_{service.upper()}_"
        env.update(
            {
                f"{prefix}HOST": self.host,
                f"{prefix}PORT": str(self.ports[service]),
                f"{prefix}DATA_DIR": str((self.data_dir / service).resolve()),
                # The personalizer (and anyone else) reaches its peers here.
                f"{prefix}EMBEDDER_ADDRESS": self.address("embedder"),
                f"{prefix}RETRIEVER_ADDRESS": self.address("retriever"),
                f"{prefix}PERSONALIZER_ADDRESS": self.address("personalizer"),
                "HF_HUB_OFFLINE": env.get("HF_HUB_OFFLINE", "1"),
            }
        )
        if self.metrics_ports is not None and service in self.metrics_ports:
            env[f"{prefix}METRICS_PORT"] = str(self.metrics_ports[service])
        env.update(self.env)
        return env

    def start(self) -> None:
        """Start the three and return once each reports SERVING; on failure stop them all and
        raise StackError with the failing service's log tail."""
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.check_ports_free()
        try:
            for service in SERVICES:
                with self.log_path(service).open("ab") as log:
                    self.processes[service] = subprocess.Popen(
                        [sys.executable, "-m", f"facesearch_server.{service}"],
                        env=self.child_env(service),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        # Own process group: a terminal's Ctrl-C reaches us, and we stop the
                        # children in order instead of all at once.
                        start_new_session=True,
                    )
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def check_ports_free(self) -> None:
        # Otherwise a stack already running there would answer our readiness checks.
        for service in SERVICES:
            with socket.socket() as probe:
                # REUSEADDR: connections of a stack that just stopped (TIME_WAIT) do not count.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((self.host, self.ports[service]))
                except OSError:
                    raise StackError(
                        f"port {self.ports[service]} ({service}) on {self.host} is in use: "
                        "is facesearch already running? Stop it or choose other ports"
                    ) from None

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        waiting = set(SERVICES)
        while waiting:
            for service in sorted(waiting):
                self.check_alive(service)
                if self._serving(service):
                    waiting.discard(service)
            if waiting and time.monotonic() > deadline:
                names = ", ".join(sorted(waiting))
                raise StackError(
                    f"{names} not SERVING after {self.ready_timeout_s:.0f}s; logs in "
                    f"{self.data_dir / 'logs'}\n{self.log_tail(sorted(waiting)[0])}"
                )
            if waiting:
                time.sleep(0.2)

    def _serving(self, service: str) -> bool:
        with grpc.insecure_channel(self.address(service)) as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=1.0
                )
            except grpc.RpcError:
                return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    def check_alive(self, service: str) -> None:
        proc = self.processes[service]
        if proc.poll() is not None:
            raise StackError(
                f"{service} exited with code {proc.returncode}; its log "
                f"({self.log_path(service)}) ends with:\n{self.log_tail(service)}"
            )

    def first_exited(self) -> str | None:
        for service, proc in self.processes.items():
            if proc.poll() is not None:
                return service
        return None

    def log_tail(self, service: str, lines: int = 20) -> str:
        try:
            text = self.log_path(service).read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every child (personalizer first: it calls the others), wait, kill stragglers.
        Returns each exit code."""
        for service in reversed(SERVICES):
            proc = self.processes.get(service)
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace_s
        codes: dict[str, int | None] = {}
        for service, proc in self.processes.items():
            try:
                codes[service] = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[service] = proc.wait(timeout=10)
        self.processes.clear()
        return codes

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
