"""The Redis head store on a real Redis: versions, model ids, reset, 20 concurrent writers,
once-per-round updates, an outage of a redis-server this test starts and stops itself, Redis
refusals and out-of-memory (both stores), and a cluster-mode redis-server."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import redis.asyncio as aioredis

from facesearch_server.personalizer import head_store
from facesearch_server.personalizer.head import Head
from facesearch_server.personalizer.head_store import RedisHeadStore
from facesearch_server.personalizer.session_store import Session, SessionStore
from facesearch_server.runtime.errors import ResourceExhausted, Unavailable
from tests.personalizer.conftest import REDIS_URL

D = 8


def _client(url: str = REDIS_URL) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)


def _add(delta: np.ndarray, pause: float = 0.0):
    async def fn(head: Head) -> tuple[np.ndarray, int]:
        if pause:
            await asyncio.sleep(pause)  # widen the read-compute-write window
        return head.weight + delta, 1

    return fn


def test_versions_model_ids_reset_and_describe(redis_prefix: str) -> None:
    async def run() -> None:
        r = _client()
        store = RedisHeadStore(r, redis_prefix)
        h = await store.get("t1", "alice", "sface", D)
        assert h.version == 0 and np.array_equal(h.weight, np.eye(D))
        delta = np.zeros((D, D), np.float32)
        delta[0, 1] = 0.5
        h1 = await store.update("t1", "alice", "sface", D, _add(delta))
        h2 = await store.update("t1", "alice", "sface", D, _add(delta))
        assert (h1.version, h2.version, h2.rounds_trained) == (1, 2, 2)
        got = await store.get("t1", "alice", "sface", D)
        assert got.version == 2 and got.weight[0, 1] == pytest.approx(1.0)
        assert got.updated_unix == pytest.approx(time.time(), abs=30)
        # Another model's head is never applied, nor another tenant's or user's.
        assert (await store.get("t1", "alice", "dlib", D)).version == 0
        assert np.array_equal((await store.get("t1", "alice", "dlib", D)).weight, np.eye(D))
        assert (await store.get("t2", "alice", "sface", D)).version == 0
        assert (await store.get("t1", "alice:sface", "", D)).version == 0
        # A stored head of another dimension under the same model id is not applied either.
        assert np.array_equal((await store.get("t1", "alice", "sface", 4)).weight, np.eye(4))
        await store.update("t1", "alice", "dlib", D, _add(delta))
        described = await store.describe("t1", "alice")
        assert [(x.model_id, x.version) for x in described] == [("dlib", 1), ("sface", 2)]
        assert described[1].drift() == pytest.approx(1.0)
        assert await store.reset("t1", "alice", "dlib") == 1
        assert [x.model_id for x in await store.describe("t1", "alice")] == ["sface"]
        assert await store.reset("t1", "alice") == 1
        assert await store.reset("t1", "alice") == 0
        assert (await store.get("t1", "alice", "sface", D)).version == 0
        await r.aclose()

    asyncio.run(run())


def test_twenty_concurrent_writers_lose_no_update(redis_prefix: str) -> None:
    writers, per_writer = 20, 5

    async def writer(i: int) -> None:
        # Each writer its own connection, as separate replicas would have.
        r = _client()
        store = RedisHeadStore(r, redis_prefix, max_retries=1000)
        delta = np.zeros((D, D), np.float32)
        delta[i % D, (i // D) % D] = 1.0
        for _ in range(per_writer):
            await store.update("t", "bob", "sface", D, _add(delta, pause=0.002))
        await r.aclose()

    async def run() -> Head:
        await asyncio.gather(*(writer(i) for i in range(writers)))
        r = _client()
        head = await RedisHeadStore(r, redis_prefix).get("t", "bob", "sface", D)
        await r.aclose()
        return head

    head = asyncio.run(run())
    assert head.version == writers * per_writer
    assert head.rounds_trained == writers * per_writer
    expect = np.eye(D, dtype=np.float32)
    for i in range(writers):
        expect[i % D, (i // D) % D] += per_writer
    np.testing.assert_allclose(head.weight, expect)  # every writer's every update is in


def test_redis_outage_is_unavailable_then_recovers(own_redis) -> None:
    async def run() -> None:
        r = _client(own_redis.url)
        store = RedisHeadStore(r, "outage:")
        delta = np.full((D, D), 0.1, np.float32)
        await store.update("t", "carol", "sface", D, _add(delta))
        own_redis.stop()
        t0 = time.monotonic()
        with pytest.raises(Unavailable, match="Redis cannot be reached"):
            await store.get("t", "carol", "sface", D)
        with pytest.raises(Unavailable, match="nothing was changed"):
            await store.update("t", "carol", "sface", D, _add(delta))
        assert time.monotonic() - t0 < 10  # fails fast, never hangs
        own_redis.start()  # the same client works again, with no call to reconnect
        deadline = time.monotonic() + 10
        while True:
            try:
                h = await store.update("t", "carol", "sface", D, _add(delta))
                break
            except Unavailable:
                assert time.monotonic() < deadline, "the store did not recover"
                await asyncio.sleep(0.2)
        assert h.version == 2  # the failed update was not applied, the new one was
        np.testing.assert_allclose(
            (await store.get("t", "carol", "sface", D)).weight, np.eye(D) + 0.2, atol=1e-6
        )
        await r.aclose()

    asyncio.run(run())


def test_update_is_all_or_nothing_when_redis_dies_mid_update(own_redis) -> None:
    """Redis goes away while the new weights are computed: nothing is written, and the head
    read after the restart is the whole previous head, never a partial one."""

    async def run() -> None:
        r = _client(own_redis.url)
        store = RedisHeadStore(r, "half:")
        delta = np.full((D, D), 0.1, np.float32)
        await store.update("t", "dave", "sface", D, _add(delta))

        async def dies(head: Head) -> tuple[np.ndarray, int]:
            own_redis.stop()
            return head.weight + 1, 1

        with pytest.raises(Unavailable):
            await store.update("t", "dave", "sface", D, dies)
        own_redis.start()
        for _ in range(50):
            try:
                head = await store.get("t", "dave", "sface", D)
                break
            except Unavailable:
                await asyncio.sleep(0.2)
        assert head.version == 1 and head.rounds_trained == 1
        np.testing.assert_allclose(head.weight, np.eye(D) + 0.1, atol=1e-6)
        await r.aclose()

    asyncio.run(run())


def test_a_round_token_trains_the_head_at_most_once(redis_prefix: str, monkeypatch) -> None:
    """One session round ("<session>:<round>") is applied once, whether it comes again later
    (a retried SubmitFeedback) or ten times at once (doubled calls on several replicas)."""
    delta = np.zeros((D, D), np.float32)
    delta[1, 2] = 1.0
    calls: list[int] = []

    def counted(pause: float = 0.0):
        inner = _add(delta, pause)

        async def fn(head: Head) -> tuple[np.ndarray, int]:
            calls.append(head.version)
            return await inner(head)

        return fn

    async def concurrent(token: str) -> list[Head]:
        async def one() -> Head:
            r = _client()
            try:
                store = RedisHeadStore(r, redis_prefix)
                return await store.update("t", "ann", "sface", D, counted(0.005), token=token)
            finally:
                await r.aclose()

        return await asyncio.gather(*(one() for _ in range(10)))

    async def run() -> None:
        r = _client()
        store = RedisHeadStore(r, redis_prefix)
        h1 = await store.update("t", "ann", "sface", D, counted(), token="s1:1")
        again = await store.update("t", "ann", "sface", D, counted(), token="s1:1")
        assert (h1.version, again.version, again.rounds_trained, len(calls)) == (1, 1, 1, 1)
        np.testing.assert_allclose(again.weight, np.eye(D) + delta)
        heads = await concurrent("s2:1")
        got = await store.get("t", "ann", "sface", D)
        assert (got.version, got.rounds_trained) == (2, 2)
        assert {h.version for h in heads} == {2}  # every caller sees the one applied update
        np.testing.assert_allclose(got.weight, np.eye(D) + 2 * delta)
        # A new round of the same session, and an update without a token, both apply.
        assert (await store.update("t", "ann", "sface", D, counted(), token="s1:2")).version == 3
        assert (await store.update("t", "ann", "sface", D, counted())).version == 4
        assert (await store.update("t", "ann", "sface", D, counted())).version == 5
        # The remembered tokens are bounded: the oldest is forgotten first.
        monkeypatch.setattr(head_store, "APPLIED_TOKENS", 3)
        for tok in ("a:1", "a:2", "a:3", "a:4"):
            await store.update("t", "ann", "sface", D, counted(), token=tok)
        assert (await store.get("t", "ann", "sface", D)).version == 9
        raw = await r.hget(store._key("t", "ann", "sface"), "applied")
        assert raw.decode().split() == ["a:2", "a:3", "a:4"]
        assert (await store.update("t", "ann", "sface", D, counted(), token="a:4")).version == 9
        assert (await store.update("t", "ann", "sface", D, counted(), token="a:1")).version == 10
        with pytest.raises(ValueError, match="white space"):
            await store.update("t", "ann", "sface", D, counted(), token="a b")
        await r.aclose()

    asyncio.run(run())


def test_redis_refusals_are_unavailable_never_internal(redis_prefix: str) -> None:
    """A command Redis refuses (here WRONGTYPE: a key overwritten by something else) is
    UNAVAILABLE with Redis' own reason, in every read and write of both stores."""

    async def run() -> None:
        r = _client()
        heads = RedisHeadStore(r, redis_prefix)
        sessions = SessionStore(r, redis_prefix)
        await r.set(heads._key("t", "gus", "sface"), "not a hash")
        await r.set(heads._user_key("t", "gus"), "not a set")
        s = Session(Session.new_id(), "t", "gus", "c", "face", "sface", D, 8, False)
        await r.set(sessions._key(s.id), "not a hash")
        await r.set(sessions._user_key("t", "gus"), "not a sorted set")
        attempts = [
            heads.get("t", "gus", "sface", D),
            heads.update("t", "gus", "sface", D, _add(np.zeros((D, D), np.float32))),
            heads.describe("t", "gus"),
            heads.reset("t", "gus"),
            sessions.load("t", s.id),
            sessions.save(s, create=True),
            sessions.active("t", "gus"),
        ]
        for attempt in attempts:
            with pytest.raises(Unavailable, match=r"Redis refused the command.*WRONGTYPE"):
                await attempt
        await r.aclose()

    asyncio.run(run())


def test_redis_out_of_memory_is_resource_exhausted(own_redis) -> None:
    async def run() -> None:
        r = _client(own_redis.url)
        heads = RedisHeadStore(r, "oom:")
        sessions = SessionStore(r, "oom:")
        delta = np.full((D, D), 0.1, np.float32)
        await heads.update("t", "hal", "sface", D, _add(delta), token="s:1")
        s = Session(Session.new_id(), "t", "hal", "c", "face", "sface", D, 8, False)
        await sessions.save(s, create=True)
        await r.config_set("maxmemory", "1")  # every write is now refused (noeviction)
        try:
            for attempt in (
                heads.update("t", "hal", "sface", D, _add(delta), token="s:2"),
                sessions.save(s),
                sessions.save(Session(Session.new_id(), "t", "hal", "c", "f", "m", D, 8, False)),
            ):
                with pytest.raises(ResourceExhausted, match=r"out of memory.*maxmemory"):
                    await attempt
            # Reads still work, and the refused writes changed nothing.
            head = await heads.get("t", "hal", "sface", D)
            assert (head.version, head.rounds_trained) == (1, 1)
            assert (await sessions.load("t", s.id)).version == 1
        finally:
            await r.config_set("maxmemory", "0")
        assert (await heads.update("t", "hal", "sface", D, _add(delta), token="s:2")).version == 2
        await r.aclose()

    asyncio.run(run())


def test_every_script_works_on_redis_cluster(cluster_redis) -> None:
    """On a cluster node, a script or transaction over keys of two slots fails (CROSSSLOT):
    the head and the user's model set share the {tenant:user} tag, the session script is
    single-key."""

    async def run() -> None:
        r = _client(cluster_redis.url)
        heads = RedisHeadStore(r, "cl:")
        sessions = SessionStore(r, "cl:")
        delta = np.full((D, D), 0.1, np.float32)
        for tok in ("s:1", "s:1", "s:2"):
            head = await heads.update("t{x}", "ida", "sface", D, _add(delta), token=tok)
        assert head.version == 2
        assert [h.version for h in await heads.describe("t{x}", "ida")] == [2]
        s = Session(Session.new_id(), "t{x}", "ida", "c", "face", "sface", D, 8, False)
        await sessions.save(s, create=True)
        loaded = await sessions.load("t{x}", s.id)
        loaded.round = 1
        await sessions.save(loaded)
        assert await sessions.active("t{x}", "ida") == 1
        assert await sessions.delete(loaded)
        assert await sessions.active("t{x}", "ida") == 0
        assert await heads.reset("t{x}", "ida") == 1
        await r.aclose()

    asyncio.run(run())
    with pytest.raises(ValueError, match="redis_prefix"):
        RedisHeadStore(_client(), "fs:{p}:")
