"""Readiness: whether a service can do its job now, apart from whether its process is alive.

gRPC health names (grpc.health.v1.Health/Check ``service`` field), the same on every service:

- ``""`` (liveness): SERVING from the moment the port opens until SIGTERM. A dependency's outage
  never turns it off, so an orchestrator does not restart a healthy process that a restart
  cannot help (Redis down, a full disk, Triton restarting).
- ``"readiness"`` and each served service's full name (``facesearch.v1.Personalizer``, ...):
  SERVING only while every dependency check of the service passed its last run; NOT_SERVING
  otherwise, so load balancers send calls elsewhere. A task re-runs the checks every
  ``readiness_interval_s``, so readiness comes back by itself when the dependency does.

A check is an async callable that returns when the dependency is usable and raises (any
exception, its text is logged) when it is not; it gets ``readiness_timeout_s`` to answer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from grpc_health.v1 import health, health_pb2
from prometheus_client import Gauge

log = logging.getLogger("facesearch.readiness")

READINESS = "readiness"

DEPENDENCY_READY = Gauge(
    "facesearch_dependency_ready",
    "1 while the dependency passed its last readiness check, else 0.",
    ["service", "dependency"],
)


@dataclass(frozen=True)
class ReadinessCheck:
    """One dependency a service needs to serve, and how to tell it is usable."""

    name: str  # "redis", "data_dir", "encoder models": what the log and the metric say
    probe: Callable[[], Awaitable[None]]


class Readiness:
    """Runs a service's checks and publishes the outcome on its readiness health names."""

    def __init__(
        self,
        service: str,
        checks: Sequence[ReadinessCheck],
        health_servicer: health.aio.HealthServicer,
        names: Sequence[str],
        timeout_s: float,
    ) -> None:
        self.service = service
        self.checks = list(checks)
        self.health = health_servicer
        self.services = list(names)
        self.timeout_s = timeout_s
        # None until the first run, so the first outcome is always published and logged.
        self._failing: set[str] | None = None

    async def _run(self, check: ReadinessCheck) -> str | None:
        try:
            await asyncio.wait_for(check.probe(), self.timeout_s)
        except TimeoutError:
            return f"no answer within {self.timeout_s:g} s"
        except Exception as exc:  # any failure means "not usable now"; the text says why
            return f"{type(exc).__name__}: {exc}"
        return None

    async def update(self) -> bool:
        """Run every check once (concurrently) and publish the result; True when ready."""
        results = await asyncio.gather(*(self._run(c) for c in self.checks))
        failing = {c.name: r for c, r in zip(self.checks, results, strict=True) if r is not None}
        for c in self.checks:
            DEPENDENCY_READY.labels(self.service, c.name).set(0 if c.name in failing else 1)
        # Compared by name: a reason's text may differ from run to run (a temp file's name),
        # and an outage is logged when it starts and ends, not every interval.
        if set(failing) != self._failing:
            first = self._failing is None
            before = self._failing or set()
            for name, reason in failing.items():
                if name not in before:
                    log.warning("not ready", extra={"dependency": name, "error": reason})
            if not failing and not first:
                log.info("ready again")
            status = (
                health_pb2.HealthCheckResponse.NOT_SERVING
                if failing
                else health_pb2.HealthCheckResponse.SERVING
            )
            for name in (READINESS, *self.services):
                await self.health.set(name, status)
        self._failing = set(failing)
        return not failing

    async def loop(self, interval_s: float) -> None:
        """Re-check forever; cancelled at shutdown."""
        while True:
            await asyncio.sleep(interval_s)
            await self.update()


def writable_dir(path: Path) -> ReadinessCheck:
    """The directory takes a new file and its fsync: what every write the service makes needs
    (read-only mount, full disk, lost permissions, a volume gone all fail here). The directory
    is never created here: one that vanished is a failure, not something to paper over."""

    def probe() -> None:
        fd, name = tempfile.mkstemp(prefix=".readiness-", dir=path)
        try:
            os.write(fd, b"ok")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(name)

    async def check() -> None:
        await asyncio.to_thread(probe)

    return ReadinessCheck("data_dir", check)
