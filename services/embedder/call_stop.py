"""When a call's preparation must stop: its caller cancelled, or its deadline passed.

Decoding and detection run on worker threads, which asyncio cannot cancel: a call that ended
would keep them busy until every image of it was done. They check a ``CallStop`` between
images and between stages instead, and give up at the first check after the call ended.
"""

from __future__ import annotations

import threading
import time

import grpc

from facesearch_server.runtime.errors import DeadlineExceeded


class CallStopped(DeadlineExceeded):
    """Preparation stopped because its call ended; never a per-image result."""


class CallStop:
    """Thread-safe: set by the event loop, checked by the worker threads."""

    def __init__(self, time_remaining: float | None = None) -> None:
        self._deadline = None if time_remaining is None else time.monotonic() + time_remaining
        self._cancelled = threading.Event()

    @classmethod
    def of(cls, context: grpc.aio.ServicerContext | None) -> CallStop:
        """The stop of a gRPC call: its deadline, if the caller set one."""
        remaining = context.time_remaining() if context is not None else None
        return cls(remaining)

    def remaining(self) -> float | None:
        """Seconds left before the deadline; None when the caller set none."""
        return None if self._deadline is None else self._deadline - time.monotonic()

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def why(self) -> str | None:
        """``cancelled`` or ``deadline`` once the call has ended, else None."""
        # The deadline first: gRPC cancels a call whose deadline passed, and that is the why.
        if self._deadline is not None and time.monotonic() >= self._deadline:
            return "deadline"
        if self._cancelled.is_set():
            return "cancelled"
        return None

    def check(self) -> None:
        """Raise ``CallStopped`` if the call has ended; cheap enough to call between stages."""
        why = self.why
        if why == "cancelled":
            raise CallStopped("the call was cancelled before its images were prepared")
        if why == "deadline":
            raise CallStopped(
                "the call's deadline passed before its images were prepared: set a longer "
                "deadline, or send fewer or smaller images per call"
            )
