"""The CLI's progress display for long flows (index, backfill, reembed, quickstart).

The flows report ``done``/``total`` and a few counters through a callback; this turns those
reports into a tqdm bar on stderr, or into nothing when the user asked for no progress. One
place, so every long command draws its bar the same way and never slows a fast run (tqdm
redraws at most every ``mininterval``).
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any


class ProgressBar:
    """A tqdm bar driven by absolute counts; a no-op when ``enabled`` is false."""

    def __init__(self, enabled: bool, *, unit: str, desc: str, total: int = 0) -> None:
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm  # imported late: the SDK does not need it to load

            self._bar = tqdm(total=total, unit=unit, desc=desc, file=sys.stderr)

    @property
    def active(self) -> bool:
        return self._bar is not None

    def show(self, done: int, total: int | None = None, **counters: object) -> None:
        """Move the bar to ``done`` of ``total``, with ``counters`` shown beside it."""
        if self._bar is None:
            return
        if total is not None:
            self._bar.total = total
        if counters:
            self._bar.set_postfix(counters, refresh=False)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
