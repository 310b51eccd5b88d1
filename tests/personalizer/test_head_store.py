"""The Redis head store on a real Redis: versions, model ids, reset, 20 concurrent writers, and
an outage of a redis-server this test starts and stops itself."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import redis.asyncio as aioredis

from services.personalizer.head import Head
from services.personalizer.head_store import RedisHeadStore
from services.runtime.errors import Unavailable
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
