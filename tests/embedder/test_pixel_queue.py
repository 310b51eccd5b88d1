"""The pixel budget's queue in-process: first come, first served, and a call that gives up
(timeout or cancellation) neither keeps pixels nor blocks the calls behind it."""

from __future__ import annotations

import asyncio

import pytest

from facesearch_server.embedder.call_stop import CallStop, CallStopped
from facesearch_server.embedder.pixel_budget import PixelBudget, PixelLimits
from facesearch_server.runtime.errors import ResourceExhausted


def budget(queue_timeout_s: float = 60.0) -> PixelBudget:
    return PixelBudget(
        PixelLimits(max_request_pixels=10, max_inflight_pixels=10, queue_timeout_s=queue_timeout_s)
    )


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_large_waiting_call_is_not_overtaken_by_smaller_ones() -> None:
    async def run() -> list[str]:
        b, order = budget(), []

        async def call(name: str, pixels: int) -> None:
            await b.admit(pixels, CallStop())
            order.append(name)

        await b.admit(6, CallStop())
        large = asyncio.create_task(call("large", 6))
        await settle()
        small = asyncio.create_task(call("small", 3))  # 6 + 3 fits, but "large" came first
        await settle()
        assert order == [] and b.admitted == 6
        b.release(6)
        await asyncio.gather(large, small)
        assert b.admitted == 9
        return order

    assert asyncio.run(run()) == ["large", "small"]


def test_a_call_that_finds_no_room_in_time_is_refused_and_keeps_nothing() -> None:
    async def run() -> None:
        b = budget(queue_timeout_s=0.01)
        await b.admit(8, CallStop())
        with pytest.raises(ResourceExhausted) as err:
            await b.admit(5, CallStop())
        assert "max_inflight_pixels" in err.value.message and "retry" in err.value.message
        assert b.admitted == 8
        b.release(8)
        await b.admit(10, CallStop())  # nothing left behind in the queue
        assert b.admitted == 10

    asyncio.run(run())


def test_a_cancelled_waiter_lets_the_next_one_through() -> None:
    async def run() -> None:
        b = budget()
        await b.admit(5, CallStop())
        head = asyncio.create_task(b.admit(10, CallStop()))  # can only run alone
        await settle()
        behind = asyncio.create_task(b.admit(5, CallStop()))
        await settle()
        assert not behind.done()
        head.cancel()
        await asyncio.wait_for(behind, 5)
        assert b.admitted == 10

    asyncio.run(run())


def test_a_wait_ends_before_the_callers_deadline() -> None:
    async def run() -> None:
        b = budget()
        await b.admit(10, CallStop())
        with pytest.raises(ResourceExhausted):  # not the 60 s queue timeout: the deadline
            await asyncio.wait_for(b.admit(1, CallStop(time_remaining=0.05)), 30)

    asyncio.run(run())


def test_a_stop_says_why_once_the_call_ended() -> None:
    stop = CallStop(time_remaining=60)
    stop.check()
    stop.cancel()
    with pytest.raises(CallStopped, match="cancelled"):
        stop.check()
    with pytest.raises(CallStopped, match="deadline"):
        CallStop(time_remaining=-1).check()


def test_the_request_limit_must_fit_the_process_budget() -> None:
    with pytest.raises(ValueError, match="never be admitted"):
        PixelBudget(PixelLimits(max_request_pixels=11, max_inflight_pixels=10))
