"""Sync calls into the async core: a private event loop on a daemon thread.

The flows are written once, as coroutines over AsyncFacesearchClient (facesearch.core). A sync
caller (facesearch.flows, FacesearchClient) runs them here: the coroutine runs on this loop
while the calling thread waits, serving the flow's sync callbacks as they come (so a progress
bar or a terminal prompt runs on the caller's thread) until the flow's outcome comes back. The
loop is not the caller's, so a sync flow also works where a loop already runs (Jupyter, a
framework's thread).

- Errors: the flow's exception is raised as it is (a failed RPC stays a grpc.RpcError).
- Ctrl-C (any BaseException on the waiting thread, e.g. KeyboardInterrupt from a callback or
  from the wait itself) cancels the flow's task, waits for its cleanup (streams cancelled,
  sessions ended) and is then re-raised; a second Ctrl-C stops waiting.
- Async generators become sync iterators pulling one item per step; leaving the loop early
  (break, close, garbage collection) closes the async generator on its loop.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

from facesearch.core.callbacks import ASYNC_ORIGINAL, CALLER

T = TypeVar("T")


class _Job:
    """One sync callback for the caller's thread, and the loop future waiting for it."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
    ) -> None:
        self.loop, self.future, self.fn, self.args = loop, future, fn, args

    def run(self) -> None:
        # Exceptions go back to the flow; KeyboardInterrupt and the like go up to _serve,
        # which cancels the flow (asyncio must not see them inside a task).
        try:
            result = self.fn(*self.args)
        except Exception as exc:
            # Handed to the flow, which raises it (the name is gone after this block).
            self._settle(functools.partial(_set_exception, exc=exc))
            return
        self._settle(lambda f: f.set_result(result))

    def refuse(self) -> None:
        self._settle(lambda f: f.cancel())

    def _settle(self, how: Callable[[asyncio.Future[Any]], object]) -> None:
        def settle() -> None:
            if not self.future.done():
                how(self.future)

        self.loop.call_soon_threadsafe(settle)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    future.set_exception(exc)


class _Done:
    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task


class _CallerThread:
    """The waiting thread of one run, as the flow sees it (core.callbacks.CALLER)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, inbox: queue.SimpleQueue[Any]) -> None:
        self.loop, self.inbox = loop, inbox

    async def call(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        future = self.loop.create_future()
        self.inbox.put(_Job(self.loop, future, fn, args))
        return await future


class LoopThread:
    """An event loop running on its own daemon thread, for sync callers of coroutines."""

    def __init__(self, name: str = "facesearch-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def run(self, awaitable: Awaitable[T]) -> T:
        """Run ``awaitable`` on the loop and return its result here (see the module doc)."""
        if self.in_loop_thread():
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # never to run: no "never awaited" warning
            raise RuntimeError(
                "a sync facesearch call cannot run on the SDK's own loop; await the async flow"
            )
        inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        caller = _CallerThread(self.loop, inbox)
        tasks: list[asyncio.Task[T]] = []

        async def main() -> T:
            CALLER.set(caller)
            return await awaitable

        def start() -> None:
            task = self.loop.create_task(main())
            task.add_done_callback(lambda t: inbox.put(_Done(t)))
            tasks.append(task)

        self.loop.call_soon_threadsafe(start)
        try:
            done = self._serve(inbox)
        except BaseException:
            # Ordered after start(): tasks holds the task when this runs.
            self.loop.call_soon_threadsafe(lambda: tasks[0].cancel())
            self._drain(inbox, tasks)
            raise
        return done.task.result()

    @staticmethod
    def _serve(inbox: queue.SimpleQueue[Any]) -> _Done:
        while True:
            item = _get(inbox)
            if isinstance(item, _Done):
                return item
            item.run()

    @staticmethod
    def _drain(inbox: queue.SimpleQueue[Any], tasks: list[asyncio.Task[Any]]) -> None:
        """Wait for a cancelled flow to finish its cleanup, refusing further callbacks."""
        while True:
            try:
                item = inbox.get(timeout=0.2)
            except queue.Empty:
                # Its _Done may have been taken already (the interrupt came just after).
                if tasks and tasks[0].done():
                    return
                continue
            if isinstance(item, _Done):
                if not item.task.cancelled():
                    item.task.exception()  # retrieved: the interrupt wins over the cleanup's error
                return
            item.refuse()

    def iterate(self, agen: AsyncIterator[T]) -> Iterator[T]:
        """A sync iterator over ``agen``, each step run on the loop."""
        pending: AsyncIterator[T] | None = agen
        try:
            while True:
                try:
                    item = self.run(_next(agen))
                except StopAsyncIteration:
                    pending = None
                    return
                except BaseException:
                    # The step raised or was cancelled (Ctrl-C): agen has ended either way.
                    pending = None
                    raise
                yield item
        finally:
            # Still open: the consumer left early (break, close, garbage collection).
            if pending is not None:
                self._close_generator(pending)

    def _close_generator(self, agen: AsyncIterator[Any]) -> None:
        aclose = getattr(agen, "aclose", None)
        if aclose is None or self.loop.is_closed():
            return
        if self.in_loop_thread():  # garbage-collected on the loop: close it there, later
            self.loop.create_task(aclose())
        else:
            self.run(aclose())

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        if not self.in_loop_thread():
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self.loop.close()


def _get(inbox: queue.SimpleQueue[Any]) -> Any:
    # A short timeout, so a Ctrl-C is handled within it even when the signal reached another
    # thread and did not interrupt this wait.
    while True:
        try:
            return inbox.get(timeout=0.2)
        except queue.Empty:
            continue


async def _next(agen: AsyncIterator[T]) -> T:
    return await agen.__anext__()


def sync_callback(loop: LoopThread, afn: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
    """A sync callable that runs the async ``afn`` on ``loop``; a flow given it awaits ``afn``
    directly (core.callbacks.ASYNC_ORIGINAL)."""

    @functools.wraps(afn)
    def call(*args: Any, **kwargs: Any) -> T:
        return loop.run(afn(*args, **kwargs))

    setattr(call, ASYNC_ORIGINAL, (afn, loop.loop))
    call.__signature__ = inspect.signature(afn)  # type: ignore[attr-defined]
    return call
