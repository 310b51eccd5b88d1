"""Many readers or one writer: a shard's searches share it and only wait while a write is
applied."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class RWLock:
    """Many readers or one writer; writers wait for readers to drain."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            self._release_read()

    @contextlib.contextmanager
    def try_read(self) -> Iterator[bool]:
        """read() if no writer holds or waits for the lock, else nothing: yields whether it was
        taken. For a caller that must not block (the event loop's inline searches)."""
        with self._cond:
            if self._writer:
                taken = False
            else:
                self._readers += 1
                taken = True
        try:
            yield taken
        finally:
            if taken:
                self._release_read()

    def _release_read(self) -> None:
        with self._cond:
            self._readers -= 1
            self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._writer = True
            while self._readers:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()
