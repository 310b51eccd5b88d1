"""Calling the caller's code (progress, on_round) from a flow, sync or async alike.

A flow awaits ``call_back(fn, ...)`` for every callback it was given. An async callback is
awaited; a sync one is called, and when the flow runs for a sync caller (facesearch.flows, on
the private loop of facesearch.sync_bridge) it is handed to that caller's thread instead: a
terminal prompt, a progress bar or a Ctrl-C then happen where the caller expects them, and the
loop stays free for the calls in flight.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Callable
from typing import Any, Protocol


class CallerThread(Protocol):
    """Runs a sync callback on the thread that started the flow (see facesearch.sync_bridge)."""

    async def call(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any: ...


# Set by the sync bridge for the flow it runs; tasks the flow starts inherit it.
CALLER: contextvars.ContextVar[CallerThread | None] = contextvars.ContextVar(
    "facesearch_caller", default=None
)

# A sync callable that stands for an async one (a sync facade's callback) names it here, with
# the loop it belongs to: a flow on that loop awaits the original instead of a round trip
# through the caller thread (on another loop, the sync callable is called like any other).
ASYNC_ORIGINAL = "__facesearch_async__"


def is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - callable objects with an async __call__
    )


async def call_back(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, awaited when async, on the caller's thread when a sync caller gave it."""
    original = getattr(fn, ASYNC_ORIGINAL, None)
    if original is not None and original[1] is asyncio.get_running_loop():
        fn = original[0]
    caller = CALLER.get()
    if caller is not None and not is_async(fn):
        result = await caller.call(fn, args)
    else:
        result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    return result
