"""Where users' lasting heads live: one small interface, a Redis backend.

A head is kept per (tenant, user, face model id), with a version bumped by every stored
update, the sessions and rounds it was trained on and the time of the last update. It changes
once per session, when the session's answers are consolidated into it (consolidation.py); a
session's own head lives in the session (session_store.py). Updates are
optimistic: read the head (version v), compute the new weights, then store them only if the
version is still v, in one Lua script (atomic on the server: either the whole head is written
or nothing is). On a conflict the update is recomputed from the newer head, so concurrent
sessions or replicas never lose each other's training.

An update may carry a token (a session's "<session id>:end"): the head remembers the newest
``APPLIED_TOKENS`` tokens it applied and skips an update whose token it already holds, so one
session trains the head at most once even when its FOUND or EndSession is retried after a
failure or sent twice at the same time (the session's own compare-and-set comes later).

ResetUser bumps the user's reset epoch (a counter per model and one for every model, in
``hreset:{tenant:user}``) besides deleting the heads. A session reads the epoch with the head
at its start and its update names it: an update whose epoch is no longer current is dropped,
so a session that was open across a reset does not teach the fresh head what the user asked to
forget.

Keys carry the hash tag ``{tenant:user}``, so the head and the user's set of model ids are in
one Redis Cluster slot and the script touches both without a CROSSSLOT error.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Protocol
from urllib.parse import quote

import numpy as np
import redis.asyncio as aioredis

from facesearch_server.personalizer.head import Head
from facesearch_server.personalizer.redis_errors import redis_call
from facesearch_server.runtime.errors import Aborted

APPLIED_TOKENS = 128  # rounds remembered per head; ~4 KB beside a 64 KB head (d=128)

# KEYS[1] head hash, KEYS[2] the user's set of model ids, KEYS[3] the user's reset epochs (one
# hash tag: one cluster slot). ARGV: expected version, weights, dim, model id, rounds added,
# updated unix time, token ('' = none), tokens kept, sessions added, expected reset epoch ('' =
# any). 'applied' holds " tok1 tok2 ... " (tokens never contain a space). Returns the new
# version, -1 on a version conflict, -2 when the token was applied before, -3 when the user was
# reset since the epoch was read.
_CAS = """
if ARGV[10] ~= '' then
  local every = tonumber(redis.call('HGET', KEYS[3], '*') or '0')
  local this = tonumber(redis.call('HGET', KEYS[3], ARGV[4]) or '0')
  if every + this ~= tonumber(ARGV[10]) then return -3 end
end
local applied = redis.call('HGET', KEYS[1], 'applied') or ' '
if ARGV[7] ~= '' and string.find(applied, ' ' .. ARGV[7] .. ' ', 1, true) then return -2 end
local cur = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if cur ~= tonumber(ARGV[1]) then return -1 end
if ARGV[7] ~= '' then
  applied = applied .. ARGV[7] .. ' '
  local _, spaces = string.gsub(applied, ' ', ' ')
  while spaces - 1 > tonumber(ARGV[8]) do
    applied = string.sub(applied, string.find(applied, ' ', 2, true))
    spaces = spaces - 1
  end
end
local rounds = tonumber(redis.call('HGET', KEYS[1], 'rounds') or '0') + tonumber(ARGV[5])
local sessions = tonumber(redis.call('HGET', KEYS[1], 'sessions') or '0') + tonumber(ARGV[9])
redis.call('HSET', KEYS[1], 'w', ARGV[2], 'dim', ARGV[3], 'model_id', ARGV[4],
           'version', cur + 1, 'rounds', rounds, 'sessions', sessions, 'updated', ARGV[6],
           'applied', applied)
redis.call('SADD', KEYS[2], ARGV[4])
return cur + 1
"""

# Put a head back as a snapshot had it (UndoFeedback). KEYS[1], KEYS[2] as _CAS. ARGV: expected
# version, existed ('1' / '0'), weights, dim, model id, rounds, updated, applied, sessions. The
# version moves on (cur + 1; versions only grow, so a writer that read the undone head cannot
# overwrite it); a snapshot of no head deletes it. Returns the new version (0 when deleted),
# -1 on a conflict.
_RESTORE = """
local cur = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if cur ~= tonumber(ARGV[1]) then return -1 end
if ARGV[2] == '0' then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[5])
  return 0
end
redis.call('HSET', KEYS[1], 'w', ARGV[3], 'dim', ARGV[4], 'model_id', ARGV[5],
           'version', cur + 1, 'rounds', ARGV[6], 'updated', ARGV[7], 'applied', ARGV[8],
           'sessions', ARGV[9])
redis.call('SADD', KEYS[2], ARGV[5])
return cur + 1
"""

# The current head's version and (new weights, rounds trained), or None: nothing to store.
Update = Callable[[Head], Awaitable[tuple[np.ndarray, int] | None]]


@dataclass
class HeadSnapshot:
    """A stored head as it is, every field but the version bit for bit (UndoFeedback)."""

    version: int  # 0 = no head stored
    weight_b64: str = ""
    rounds: int = 0
    updated: str = "0"
    applied: str = " "
    sessions: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> HeadSnapshot:
        return cls(**d)


class HeadStore(Protocol):
    async def get(self, tenant: str, user: str, model_id: str, dim: int) -> Head: ...

    async def update(
        self,
        tenant: str,
        user: str,
        model_id: str,
        dim: int,
        fn: Update,
        token: str = "",
        sessions: int = 0,
        epoch: int | None = None,
    ) -> Head | None:
        """Apply ``fn`` (current head -> new weights, rounds trained; None = no change)
        atomically, at most once per non-empty ``token``, adding ``sessions`` to the sessions
        trained; only while the user's reset epoch is ``epoch`` (None = any): else None."""
        ...

    async def reset(self, tenant: str, user: str, model_id: str = "") -> int:
        """Forget the user's head(s) and bump the reset epoch: the heads deleted."""
        ...

    async def snapshot(self, tenant: str, user: str, model_id: str, dim: int) -> HeadSnapshot: ...

    async def restore(
        self, tenant: str, user: str, model_id: str, dim: int, snap: HeadSnapshot, expected: int
    ) -> int:
        """Put ``snap`` back if the stored version is still ``expected``: the new version, or -1
        when another update came first (nothing written)."""
        ...

    async def describe(self, tenant: str, user: str) -> list[Head]: ...


def tag_free_prefix(prefix: str) -> str:
    if "{" in prefix or "}" in prefix:
        # The keys' own {tenant:user} tag must be the first one Redis Cluster sees.
        raise ValueError(f"redis_prefix {prefix!r} may not contain '{{' or '}}'")
    return prefix


class RedisHeadStore:
    def __init__(
        self, client: aioredis.Redis, prefix: str = "fs:p:", max_retries: int = 64
    ) -> None:
        self.r = client
        self.prefix = tag_free_prefix(prefix)
        self.max_retries = max_retries
        self._cas = client.register_script(_CAS)
        self._restore = client.register_script(_RESTORE)

    @staticmethod
    def _tag(tenant: str, user: str) -> str:
        # quote() escapes braces too, so no tenant or user can end the tag early.
        return "{" + quote(tenant, safe="") + ":" + quote(user, safe="") + "}"

    def _key(self, tenant: str, user: str, model_id: str) -> str:
        return f"{self.prefix}head:{self._tag(tenant, user)}:{quote(model_id, safe='')}"

    def _user_key(self, tenant: str, user: str) -> str:
        return f"{self.prefix}heads:{self._tag(tenant, user)}"

    def _reset_key(self, tenant: str, user: str) -> str:
        return f"{self.prefix}hreset:{self._tag(tenant, user)}"

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
            sessions_trained=int(raw.get(b"sessions", b"0")),
        )

    async def _read(self, tenant: str, user: str, model_id: str, dim: int) -> tuple[Head, set[str]]:
        with redis_call("reading the user's head"):
            async with self.r.pipeline(transaction=False) as pipe:
                pipe.hgetall(self._key(tenant, user, model_id))
                pipe.hmget(self._reset_key(tenant, user), ["*", model_id])
                raw, epochs = await pipe.execute()
        head = self._decode(model_id, dim, raw)
        if raw and head.version == 0:
            # The key holds a head we refused (other dim); keep its version for the CAS.
            head.version = int(raw.get(b"version", b"0"))
        head.epoch = sum(int(e) for e in epochs if e is not None)
        return head, set(raw.get(b"applied", b"").decode().split())

    async def get(self, tenant: str, user: str, model_id: str, dim: int) -> Head:
        return (await self._read(tenant, user, model_id, dim))[0]

    async def update(
        self,
        tenant: str,
        user: str,
        model_id: str,
        dim: int,
        fn: Update,
        token: str = "",
        sessions: int = 0,
        epoch: int | None = None,
    ) -> Head | None:
        """Apply ``fn`` atomically; with a ``token`` already applied, return the head as is;
        when the user was reset since ``epoch``, None (nothing stored)."""
        if any(c.isspace() for c in token):
            raise ValueError(f"head update token {token!r} contains white space")
        keys = [
            self._key(tenant, user, model_id),
            self._user_key(tenant, user),
            self._reset_key(tenant, user),
        ]
        for _ in range(self.max_retries):
            head, applied = await self._read(tenant, user, model_id, dim)
            if epoch is not None and head.epoch != epoch:
                return None
            if token and token in applied:
                return head
            change = await fn(head)
            if change is None:
                return head
            weight, rounds = change
            now = time.time()
            with redis_call("storing the user's head"):
                version = int(
                    await self._cas(
                        keys=keys,
                        args=[
                            head.version,
                            Head(model_id, weight).weight_bytes(),
                            dim,
                            model_id,
                            rounds,
                            now,
                            token,
                            APPLIED_TOKENS,
                            sessions,
                            "" if epoch is None else epoch,
                        ],
                    )
                )
            if version == -3:  # reset while this update was computed
                return None
            if version == -2:  # another call applied this update meanwhile
                return await self.get(tenant, user, model_id, dim)
            if version >= 0:
                return Head(
                    model_id,
                    weight,
                    version,
                    head.rounds_trained + rounds,
                    now,
                    head.sessions_trained + sessions,
                    head.epoch,
                )
        raise Aborted(
            f"the head of user {user!r} changed {self.max_retries} times while this update was "
            "computed; retry"
        )

    async def snapshot(self, tenant: str, user: str, model_id: str, dim: int) -> HeadSnapshot:
        with redis_call("reading the user's head"):
            raw = await self.r.hgetall(self._key(tenant, user, model_id))
        if not raw or b"w" not in raw:
            return HeadSnapshot(int(raw.get(b"version", b"0")) if raw else 0)
        return HeadSnapshot(
            version=int(raw[b"version"]),
            weight_b64=base64.b64encode(raw[b"w"]).decode(),
            rounds=int(raw.get(b"rounds", b"0")),
            updated=raw.get(b"updated", b"0").decode(),
            applied=raw.get(b"applied", b" ").decode(),
            sessions=int(raw.get(b"sessions", b"0")),
        )

    async def restore(
        self, tenant: str, user: str, model_id: str, dim: int, snap: HeadSnapshot, expected: int
    ) -> int:
        with redis_call("restoring the user's head"):
            return int(
                await self._restore(
                    keys=[self._key(tenant, user, model_id), self._user_key(tenant, user)],
                    args=[
                        expected,
                        "1" if snap.weight_b64 else "0",
                        base64.b64decode(snap.weight_b64),
                        dim,
                        model_id,
                        snap.rounds,
                        snap.updated,
                        snap.applied,
                        snap.sessions,
                    ],
                )
            )

    async def reset(self, tenant: str, user: str, model_id: str = "") -> int:
        ukey = self._user_key(tenant, user)
        with redis_call("forgetting the user's heads"):
            models = [model_id] if model_id else [m.decode() for m in await self.r.smembers(ukey)]
            keys = [self._key(tenant, user, m) for m in models]
            async with self.r.pipeline(transaction=True) as pipe:
                # The epoch moves even when no head is stored: a session open now may not
                # store one later (it read the old epoch).
                pipe.hincrby(self._reset_key(tenant, user), model_id or "*", 1)
                if models:
                    pipe.delete(*keys)
                    pipe.srem(ukey, *models)
                out = await pipe.execute()
            return int(out[1]) if models else 0

    async def describe(self, tenant: str, user: str) -> list[Head]:
        with redis_call("reading the user's heads"):
            models = sorted(m.decode() for m in await self.r.smembers(self._user_key(tenant, user)))
            heads = []
            for m in models:
                raw = await self.r.hgetall(self._key(tenant, user, m))
                if raw:
                    heads.append(self._decode(m, int(raw[b"dim"]), raw))
            return heads
