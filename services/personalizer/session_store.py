"""Interactive sessions in Redis, so any replica serves the next round and a session survives a
personalizer restart.

A session is one Redis hash: ``v`` (version, bumped by every stored change) and ``d`` (the
session as JSON: owner, collection, face model, shown ids in order with their vectors, labels,
round, finished). It expires ``ttl_s`` after the last call on it (every load extends it). Writes
are compare-and-set on ``v`` in a Lua script over that one key (so it runs on Redis Cluster
too), so two replicas answering the same session at once cannot interleave: the later one is
told to retry. A per-user sorted set (session id -> expiry) counts live sessions; it is only a
count, written beside the session rather than in its script.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from urllib.parse import quote

import numpy as np
import redis.asyncio as aioredis
from redis.exceptions import OutOfMemoryError, RedisError

from facesearch_server.personalizer.head_store import tag_free_prefix
from facesearch_server.personalizer.redis_errors import redis_call, redis_failure
from facesearch_server.runtime.errors import Aborted, NotFound

# KEYS[1] the session hash. ARGV: expected version (-1 = the session must not exist yet), JSON,
# ttl ms. Returns the new version, -1 on a conflict, -2 when the session is gone.
_CAS = """
local cur = redis.call('HGET', KEYS[1], 'v')
if tonumber(ARGV[1]) < 0 then
  if cur then return -1 end
  cur = 0
else
  if not cur then return -2 end
  if tonumber(cur) ~= tonumber(ARGV[1]) then return -1 end
end
local nxt = tonumber(cur) + 1
redis.call('HSET', KEYS[1], 'v', nxt, 'd', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return nxt
"""

_GONE = "does not exist or has expired: start a new one"


@dataclass
class Session:
    id: str
    tenant: str
    user: str
    collection: str
    field: str
    model_id: str
    dim: int
    k: int
    ephemeral: bool
    filter_b64: str = ""
    round: int = 0
    finished: bool = False
    found_id: str = ""
    shown: list[str] = field(default_factory=list)
    # Answer codes by shown id (answer_model.py: 1 similar, -1 dissimilar, 2 not the person
    # but similar, -2 not the person and nothing like them); a later label of the same id wins.
    labels: dict[str, int] = field(default_factory=dict)
    # Ids shown in the latest round (unlabelled ones become dissimilar on feedback).
    last_round: list[str] = field(default_factory=list)
    exploratory: list[bool] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    vectors_b64: str = ""  # float32 (len(shown), dim), row i = shown[i]
    seed_b64: str = ""  # float32 (dim,) when the session started from a seed
    exclude: list[str] = field(default_factory=list)  # never shown (e.g. the seed point)
    rounds_with_positive: int = 0
    # The collection's pair-score quantiles when the session started (candidate_source
    # FaceField.profile): the answer model's tau / tau_unlike; 0/0 = the configured constants.
    likeness_p98: float = 0.0
    likeness_median: float = 0.0
    # Whether tau is lifted above that p98 (answer_model.on_scale): only in a collection of at
    # least round.hub_min_faces faces; in a smaller one the p98 is same-person territory.
    likeness_lifted: bool = False
    # The collection's unit mean direction when the session started (float32, dim), or "":
    # where the early exploratory rounds look (exploration.hub_directions).
    centroid_b64: str = ""
    # The user's lasting head as it was at the start (its version and reset epoch, and its
    # weights, float32 (dim, dim); "" = the identity): fixed for the session's life.
    head_version: int = 0
    head_epoch: int = 0
    lasting_b64: str = ""
    # The session's own head, trained on this session's answers from the lasting head; "" =
    # not trained yet (the lasting head). Dropped with the session.
    head_b64: str = ""
    # True once this session's answers were put to the user's lasting head (FOUND or
    # EndSession), so they go in once; the head's version that holds them (0: none stored:
    # nothing to learn from, or the user was reset since the start).
    consolidated: bool = False
    stored_version: int = 0
    expires_unix: float = 0.0
    # What UndoFeedback restores, oldest first, one per answered round (at most undo_depth):
    # the session's fields before that round (``undo_snapshot``) and, under "head", the user's
    # stored head before it (head_store.HeadSnapshot as a dict) or None when the round did
    # not change it.
    undo: list[dict] = field(default_factory=list)
    version: int = 0

    # Fields an undo record does not copy: the vectors (cut back to "n_shown" rows instead),
    # the lasting head (the same all session long), the undo stack itself and what the store
    # sets.
    _NOT_SNAPSHOT = (
        "vectors_b64",
        "lasting_b64",
        "centroid_b64",
        "undo",
        "version",
        "expires_unix",
    )

    def undo_snapshot(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in self._NOT_SNAPSHOT}
        d["n_shown"] = len(self.shown)
        return d

    def restored(self, snapshot: dict) -> Session:
        """This session as it was when ``snapshot`` was taken (store version kept for the CAS)."""
        fields = {k: v for k, v in snapshot.items() if k not in ("n_shown", "head")}
        back = Session(
            **fields,
            lasting_b64=self.lasting_b64,
            version=self.version,
            expires_unix=self.expires_unix,
        )
        back.set_vectors(self.vectors()[: snapshot["n_shown"]])
        back.undo = self.undo[:-1]
        return back

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(18)

    def vectors(self) -> np.ndarray:
        if not self.vectors_b64:
            return np.zeros((0, self.dim), np.float32)
        return np.frombuffer(base64.b64decode(self.vectors_b64), "<f4").reshape(-1, self.dim).copy()

    def set_vectors(self, v: np.ndarray) -> None:
        self.vectors_b64 = base64.b64encode(np.ascontiguousarray(v, "<f4").tobytes()).decode()

    def seed(self) -> np.ndarray | None:
        if not self.seed_b64:
            return None
        return np.frombuffer(base64.b64decode(self.seed_b64), "<f4").copy()

    def centroid(self) -> np.ndarray | None:
        if not self.centroid_b64:
            return None
        return np.frombuffer(base64.b64decode(self.centroid_b64), "<f4").copy()

    def to_json(self) -> str:
        d = asdict(self)
        d.pop("version")
        return json.dumps(d, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str, version: int) -> Session:
        d = json.loads(raw)
        # A session stored by the build before lasting heads: its head was the stored one
        # (non-ephemeral) or this field (ephemeral); it goes on from the head it had, if any.
        d["head_b64"] = d.pop("ephemeral_weight_b64", d.get("head_b64", ""))
        return cls(**d, version=version)

    def weights(self, field_b64: str) -> np.ndarray | None:
        """A stored (dim, dim) head of this session (``lasting_b64`` or ``head_b64``), or
        None when the field is empty."""
        raw = getattr(self, field_b64)
        if not raw:
            return None
        w = np.frombuffer(base64.b64decode(raw), "<f4")
        if w.size != self.dim * self.dim or not np.isfinite(w).all():
            raise ValueError(f"session {self.id!r} holds a broken {field_b64}")
        return w.reshape(self.dim, self.dim).copy()

    def set_weights(self, field_b64: str, w: np.ndarray | None) -> None:
        raw = b"" if w is None else np.ascontiguousarray(w, "<f4").tobytes()
        setattr(self, field_b64, base64.b64encode(raw).decode())


class SessionStore:
    def __init__(self, client: aioredis.Redis, prefix: str = "fs:p:", ttl_s: float = 1800) -> None:
        self.r = client
        self.prefix = tag_free_prefix(prefix)
        self.ttl_s = ttl_s
        self._cas = client.register_script(_CAS)

    def _key(self, session_id: str) -> str:
        return f"{self.prefix}sess:{session_id}"

    def _user_key(self, tenant: str, user: str) -> str:
        return f"{self.prefix}usess:{quote(tenant, safe='')}:{quote(user, safe='')}"

    async def _count_live(self, s: Session) -> None:
        # Before the session write: a count that runs ahead by one failed write is harmless
        # (pruned at its expiry), a live session missing from the count would not be.
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.zadd(self._user_key(s.tenant, s.user), {s.id: s.expires_unix})
            pipe.pexpire(self._user_key(s.tenant, s.user), int(self.ttl_s * 1000))
            await pipe.execute()

    async def load(self, tenant: str, session_id: str) -> Session:
        """The session, its TTL extended: any call on a session keeps it alive."""
        with redis_call("reading the session"):
            raw = await self.r.hmget(self._key(session_id), ["v", "d"])
        if raw[0] is None or raw[1] is None:
            raise NotFound(f"session {session_id!r} {_GONE}")
        s = Session.from_json(raw[1].decode(), int(raw[0]))
        if s.tenant != tenant:  # another tenant's session: do not even confirm it exists
            raise NotFound(f"session {session_id!r} {_GONE}")
        s.expires_unix = time.time() + self.ttl_s
        with redis_call("extending the session's lifetime"):
            if not await self.r.pexpire(self._key(session_id), int(self.ttl_s * 1000)):
                raise NotFound(f"session {session_id!r} {_GONE}")
        try:
            await self._count_live(s)
        except OutOfMemoryError:
            # A full Redis still serves reads; the count may then drop this session early.
            pass
        except RedisError as exc:
            raise redis_failure(exc, "counting the session as live") from exc
        return s

    async def save(self, s: Session, create: bool = False) -> Session:
        s.expires_unix = time.time() + self.ttl_s
        with redis_call("storing the session"):
            await self._count_live(s)
            v = int(
                await self._cas(
                    keys=[self._key(s.id)],
                    args=[-1 if create else s.version, s.to_json(), int(self.ttl_s * 1000)],
                )
            )
        if v == -2:
            raise NotFound(f"session {s.id!r} expired or ended while this call ran")
        if v < 0:
            raise Aborted(
                f"session {s.id!r} was changed by another call at the same time; fetch it with "
                "GetSession and retry"
            )
        s.version = v
        return s

    async def delete(self, s: Session) -> bool:
        with redis_call("ending the session"):
            # Two keys in different cluster slots: two commands, not one transaction.
            deleted = await self.r.delete(self._key(s.id))
            await self.r.zrem(self._user_key(s.tenant, s.user), s.id)
        return bool(deleted)

    async def active(self, tenant: str, user: str) -> int:
        key = self._user_key(tenant, user)
        with redis_call("counting the user's sessions"):
            await self.r.zremrangebyscore(key, "-inf", time.time())
            return int(await self.r.zcard(key))
