"""The sync facade's machinery (facesearch.sync_bridge) without servers: results and errors
come back as they are, sync callbacks run on the caller's thread, Ctrl-C cancels the flow and
waits for its cleanup, iterators close their async generator, and it works inside a loop."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

from facesearch.core.callbacks import call_back
from facesearch.sync_bridge import LoopThread, sync_callback


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    runner = LoopThread()
    yield runner
    runner.close()


def test_result_and_exception_come_back_as_they_are(loop: LoopThread) -> None:
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    assert loop.run(double(21)) == 42

    class Boom(Exception):
        pass

    async def fail() -> None:
        raise Boom("no")

    with pytest.raises(Boom, match="no"):
        loop.run(fail())


def test_sync_callbacks_run_on_the_callers_thread(loop: LoopThread) -> None:
    seen: list[str] = []

    async def flow() -> str:
        await call_back(lambda: seen.append(threading.current_thread().name))

        async def async_cb() -> None:
            seen.append(threading.current_thread().name)

        await call_back(async_cb)  # an async callback is awaited on the loop
        return await call_back(lambda x: x + "!", "done")

    assert loop.run(flow()) == "done!"
    assert seen == [threading.current_thread().name, "facesearch-loop"]


def test_a_callbacks_exception_reaches_the_flow(loop: LoopThread) -> None:
    cleaned = []

    def bad() -> None:
        raise ValueError("bad label")

    async def flow() -> None:
        try:
            await call_back(bad)
        finally:
            cleaned.append(True)

    with pytest.raises(ValueError, match="bad label"):
        loop.run(flow())
    assert cleaned == [True]


def test_ctrl_c_in_a_callback_cancels_the_flow_after_its_cleanup(loop: LoopThread) -> None:
    cleanup: list[str] = []

    def interrupted() -> None:
        raise KeyboardInterrupt

    async def flow() -> None:
        try:
            await call_back(interrupted)
        except asyncio.CancelledError:
            cleanup.append("cancelled")
            raise
        finally:
            await asyncio.sleep(0.05)  # cleanup that awaits (e.g. EndSession) still runs
            cleanup.append("ended")

    with pytest.raises(KeyboardInterrupt):
        loop.run(flow())
    assert cleanup == ["cancelled", "ended"]


_CTRL_C = """
import asyncio, os, signal, threading, time
from facesearch.sync_bridge import LoopThread

# As a terminal-started CLI has it, however this test run was launched (a runner started in
# the background of a non-interactive shell inherits SIGINT ignored, and so would this child).
signal.signal(signal.SIGINT, signal.default_int_handler)
cleanup = []

async def slow():
    try:
        await asyncio.sleep(30)
    finally:
        cleanup.append("ended")

loop = LoopThread()
# A real SIGINT, as a terminal's Ctrl-C sends it.
threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
started = time.monotonic()
try:
    loop.run(slow())
    print("no interrupt")
except KeyboardInterrupt:
    print(f"interrupted after {time.monotonic() - started:.1f} s; cleanup {cleanup}")
loop.close()
"""


def test_ctrl_c_while_waiting_cancels_the_flow() -> None:
    # In a fresh interpreter, as a CLI process is: Ctrl-C is process-wide state that the test
    # session's own launch decides (see _CTRL_C).
    done = subprocess.run(
        [sys.executable, "-c", _CTRL_C], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    said = done.stdout.strip()
    assert said.startswith("interrupted after") and said.endswith("cleanup ['ended']"), said
    assert float(said.split()[2]) < 5, said


async def _numbers(closed: list[bool], n: int = 5) -> AsyncIterator[int]:
    try:
        for i in range(n):
            await asyncio.sleep(0)
            yield i
    finally:
        closed.append(True)


def test_iterate_yields_every_item_and_closes_early_exits(loop: LoopThread) -> None:
    closed: list[bool] = []
    assert list(loop.iterate(_numbers(closed))) == [0, 1, 2, 3, 4]
    assert closed == [True]

    closed.clear()
    for i in loop.iterate(_numbers(closed)):
        if i == 1:
            break
    # The sync generator is closed when it goes away; its async generator with it.
    assert closed == [True]


def test_a_sync_flow_runs_where_a_loop_already_runs(loop: LoopThread) -> None:
    async def inner() -> str:
        return "ok"

    async def notebook_cell() -> str:
        # A sync call inside a running loop (Jupyter): the flow runs on the private loop.
        return loop.run(inner())

    assert asyncio.run(notebook_cell()) == "ok"


def test_sync_callback_wraps_an_async_function(loop: LoopThread) -> None:
    async def label(x: int) -> int:
        return x + 1

    sync_label = sync_callback(loop, label)
    assert sync_label(1) == 2

    async def flow() -> int:
        # Given to a flow, it is awaited directly, not sent round through the caller.
        return await call_back(sync_label, 41)

    assert loop.run(flow()) == 42


def test_the_loop_refuses_a_sync_call_from_itself(loop: LoopThread) -> None:
    async def reentrant() -> None:
        loop.run(asyncio.sleep(0))

    with pytest.raises(RuntimeError, match="await the async flow"):
        loop.run(reentrant())
