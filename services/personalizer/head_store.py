"""Where per-user heads live: one small interface, a Redis backend.

A head is kept per (tenant, user, face model id), with a version bumped by every stored
update, the rounds it was trained on and the time of the last update. Updates are
optimistic: read the head (version v), compute the new weights, then store them only if the
version is still v, in one Lua script (atomic on the server: either the whole head is written
or nothing is). On a conflict the update is recomputed from the newer head, so concurrent
sessions or replicas never lose each other's training.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Protocol
from urllib.parse import quote

import numpy as np
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.personalizer.head import Head
from services.runtime.errors import Aborted, Unavailable

# KEYS[1] head hash, KEYS[2] the user's set of model ids.
# ARGV: expected version, weights, dim, model id, rounds added, updated unix time.
_CAS = """
local cur = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if cur ~= tonumber(ARGV[1]) then return -1 end
local rounds = tonumber(redis.call('HGET', KEYS[1], 'rounds') or '0') + tonumber(ARGV[5])
redis.call('HSET', KEYS[1], 'w', ARGV[2], 'dim', ARGV[3], 'model_id', ARGV[4],
           'version', cur + 1, 'rounds', rounds, 'updated', ARGV[6])
redis.call('SADD', KEYS[2], ARGV[4])
return cur + 1
"""

Update = Callable[[Head], Awaitable[tuple[np.ndarray, int]]]


class HeadStore(Protocol):
    async def get(self, tenant: str, user: str, model_id: str, dim: int) -> Head: ...

    async def update(self, tenant: str, user: str, model_id: str, dim: int, fn: Update) -> Head:
        """Apply ``fn`` (current head -> new weights, rounds trained) atomically."""
        ...

    async def reset(self, tenant: str, user: str, model_id: str = "") -> int: ...

    async def describe(self, tenant: str, user: str) -> list[Head]: ...


def redis_unavailable(exc: Exception, what: str) -> Unavailable:
    return Unavailable(
        f"Redis cannot be reached ({type(exc).__name__}: {exc}) while {what}; nothing was "
        "changed, retry when Redis is back"
    )


class RedisHeadStore:
    def __init__(
        self, client: aioredis.Redis, prefix: str = "fs:p:", max_retries: int = 64
    ) -> None:
        self.r = client
        self.prefix = prefix
        self.max_retries = max_retries
        self._cas = client.register_script(_CAS)

    def _key(self, tenant: str, user: str, model_id: str) -> str:
        parts = (quote(x, safe="") for x in (tenant, user, model_id))
        return f"{self.prefix}head:" + ":".join(parts)

    def _user_key(self, tenant: str, user: str) -> str:
        return f"{self.prefix}heads:{quote(tenant, safe='')}:{quote(user, safe='')}"

    @staticmethod
    def _decode(model_id: str, dim: int, raw: dict[bytes, bytes]) -> Head:
        if not raw or b"w" not in raw:
            return Head.identity(model_id, dim)
        stored_dim = int(raw[b"dim"])
        if raw.get(b"model_id", b"").decode() != model_id or stored_dim != dim:
            # Another model's head (or a dimension change): never applied.
            return Head.identity(model_id, dim)
        return Head(
            model_id=model_id,
            weight=Head.weight_from_bytes(raw[b"w"], dim),
            version=int(raw[b"version"]),
            rounds_trained=int(raw.get(b"rounds", b"0")),
            updated_unix=float(raw.get(b"updated", b"0")),
        )

    async def get(self, tenant: str, user: str, model_id: str, dim: int) -> Head:
        try:
            raw = await self.r.hgetall(self._key(tenant, user, model_id))
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise redis_unavailable(exc, "reading the user's head") from exc
        head = self._decode(model_id, dim, raw)
        if raw and head.version == 0:
            # The key holds a head we refused (other dim); keep its version for the CAS.
            head.version = int(raw.get(b"version", b"0"))
        return head

    async def update(self, tenant: str, user: str, model_id: str, dim: int, fn: Update) -> Head:
        key, ukey = self._key(tenant, user, model_id), self._user_key(tenant, user)
        for _ in range(self.max_retries):
            head = await self.get(tenant, user, model_id, dim)
            weight, rounds = await fn(head)
            now = time.time()
            try:
                version = await self._cas(
                    keys=[key, ukey],
                    args=[
                        head.version,
                        Head(model_id, weight).weight_bytes(),
                        dim,
                        model_id,
                        rounds,
                        now,
                    ],
                )
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                raise redis_unavailable(exc, "storing the user's head") from exc
            except RedisError as exc:
                raise Unavailable(f"Redis refused the head update: {exc}") from exc
            if int(version) >= 0:
                return Head(model_id, weight, int(version), head.rounds_trained + rounds, now)
        raise Aborted(
            f"the head of user {user!r} changed {self.max_retries} times while this update was "
            "computed; retry"
        )

    async def reset(self, tenant: str, user: str, model_id: str = "") -> int:
        ukey = self._user_key(tenant, user)
        try:
            models = [model_id] if model_id else [m.decode() for m in await self.r.smembers(ukey)]
            if not models:
                return 0
            keys = [self._key(tenant, user, m) for m in models]
            async with self.r.pipeline(transaction=True) as pipe:
                pipe.delete(*keys)
                pipe.srem(ukey, *models)
                deleted, _ = await pipe.execute()
            return int(deleted)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise redis_unavailable(exc, "forgetting the user's heads") from exc

    async def describe(self, tenant: str, user: str) -> list[Head]:
        try:
            models = sorted(m.decode() for m in await self.r.smembers(self._user_key(tenant, user)))
            heads = []
            for m in models:
                raw = await self.r.hgetall(self._key(tenant, user, m))
                if raw:
                    heads.append(self._decode(m, int(raw[b"dim"]), raw))
            return heads
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise redis_unavailable(exc, "reading the user's heads") from exc
