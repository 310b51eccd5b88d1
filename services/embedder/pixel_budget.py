"""How many decoded pixels the embedder takes on: per request, and over all calls at once.

An image's cost is its pixels, not its bytes: a 100 KB PNG may declare 40 MP, which Pillow
holds as ~400 MB while it converts them, and decoding, converting and shrinking them for
detection takes ~1 s of CPU here. So each request is weighed by the pixels its images declare
in their headers, before any is decoded:

- more than ``max_request_pixels`` in one request: RESOURCE_EXHAUSTED at once (split it);
- calls are admitted while the pixels admitted and not yet prepared stay within
  ``max_inflight_pixels``; one that does not fit waits its turn (first come, first served) for
  at most ``queue_timeout_s`` and never past 90 % of its deadline, then RESOURCE_EXHAUSTED
  (retry later). Each image's share is given back as soon as it is prepared.

glibc keeps what the decoding threads (and gRPC, for a large request's bytes) freed in its
malloc arenas: after 16 images of 40 MP the process stayed ~1 GB above where it started
(bench/embedder/large_images.py). So once enough megabytes went through since the last time
(images received, and decoded at Pillow's 4 bytes a pixel), a second after the last call let
go of them and nothing is being decoded, ``malloc_trim`` hands the free memory back to the OS
(~20-80 ms of CPU, on a worker thread).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from prometheus_client import Counter, Gauge

from facesearch_server.embedder.call_stop import CallStop
from facesearch_server.runtime.errors import ResourceExhausted

PIXELS_ADMITTED = Gauge(
    "facesearch_embedder_pixels_admitted",
    "Decoded pixels admitted (max_inflight_pixels) and not yet prepared.",
)
PIXELS_WAITING = Gauge(
    "facesearch_embedder_pixels_waiting",
    "Decoded pixels of calls waiting for room in max_inflight_pixels.",
)
CALLS_QUEUED = Counter(
    "facesearch_embedder_pixel_queued_total",
    "Calls (or stream images) that had to wait for room in max_inflight_pixels.",
)
REFUSED = Counter(
    "facesearch_embedder_pixel_refused_total",
    "Calls refused for their pixels: reason=request (over max_request_pixels) or busy "
    "(no room in max_inflight_pixels in time).",
    ["reason"],
)
IMAGES_STOPPED = Counter(
    "facesearch_embedder_images_stopped_total",
    "Images whose decoding or detection was skipped or cut short because their call ended "
    "(why=deadline or cancelled).",
    ["why"],
)
MEMORY_TRIMS = Counter(
    "facesearch_embedder_memory_trims_total",
    "Times freed decoding memory was handed back to the OS (glibc malloc_trim).",
)

# How long after the last release a trim waits: gRPC frees a request's bytes only after its
# handler returned, and a trim between two calls of a burst would be wasted.
TRIM_DELAY_S = 1.0
BYTES_PER_DECODED_PIXEL = 4  # Pillow's RGB storage
# Giving up on the queue a little before the deadline lets the caller hear why
# (RESOURCE_EXHAUSTED) instead of a bare DEADLINE_EXCEEDED from its own clock.
DEADLINE_SHARE = 0.9


@dataclass(frozen=True)
class PixelLimits:
    max_request_pixels: int = 200_000_000
    max_inflight_pixels: int = 400_000_000
    queue_timeout_s: float = 30.0
    trim_after_mb: int = 64  # 0: never trim


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS): nothing to trim
        return None


def release_freed_memory() -> bool:
    """Hand the free memory of every malloc arena back to the OS; False where not glibc."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    MEMORY_TRIMS.inc()
    return True


class PixelBudget:
    """Admission by decoded pixels. Used from the event loop thread only (worker threads give
    pixels back through ``loop.call_soon_threadsafe``), so it needs no lock."""

    def __init__(self, limits: PixelLimits | None = None) -> None:
        self.limits = limits or PixelLimits()
        if self.limits.max_request_pixels > self.limits.max_inflight_pixels:
            raise ValueError(
                f"max_request_pixels ({self.limits.max_request_pixels:,}) is over "
                f"max_inflight_pixels ({self.limits.max_inflight_pixels:,}): such a request "
                "could never be admitted"
            )
        self.admitted = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._since_trim = 0  # bytes received and decoded since the last trim
        self._trim_timer: asyncio.TimerHandle | None = None
        self._trimming = False

    def received(self, nbytes: int) -> None:
        """Count a request's encoded images towards the next trim."""
        self._since_trim += nbytes

    def check_request(self, pixels: int, count: int, field: str) -> None:
        """RESOURCE_EXHAUSTED when one request declares more pixels than it may."""
        limit = self.limits.max_request_pixels
        if pixels > limit:
            REFUSED.labels("request").inc()
            self._maybe_trim()  # its bytes, held until the refusal is sent
            raise ResourceExhausted(
                f"{field}: the {count} images declare {pixels:,} pixels in all; this server "
                f"decodes at most {limit:,} per request (max_request_pixels): split them over "
                "several requests, or send smaller images"
            )

    async def admit(self, pixels: int, stop: CallStop) -> None:
        """Take ``pixels`` from the budget, waiting in line for room; RESOURCE_EXHAUSTED when
        none comes within the queue timeout or before the call's deadline."""
        if pixels <= 0:
            return
        if not self._waiting and self.admitted + pixels <= self.limits.max_inflight_pixels:
            self._take(pixels)
            return
        wait_s = self.limits.queue_timeout_s
        remaining = stop.remaining()
        if remaining is not None:
            wait_s = min(wait_s, remaining * DEADLINE_SHARE)
        if wait_s <= 0:
            raise self._busy(pixels, 0.0)
        started = time.monotonic()
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (pixels, turn)
        self._waiting.append(entry)
        CALLS_QUEUED.inc()
        PIXELS_WAITING.inc(pixels)
        try:
            async with asyncio.timeout(wait_s):
                await turn
        except BaseException as exc:
            if turn.done() and not turn.cancelled():  # granted just as the wait ended
                self.release(pixels)
            else:
                turn.cancel()
                if entry in self._waiting:
                    self._waiting.remove(entry)
                self._grant()  # a large call leaving the head may let smaller ones through
            if isinstance(exc, TimeoutError):
                raise self._busy(pixels, time.monotonic() - started) from None
            raise
        finally:
            PIXELS_WAITING.dec(pixels)

    def _busy(self, pixels: int, waited_s: float) -> ResourceExhausted:
        REFUSED.labels("busy").inc()
        self._maybe_trim()  # its bytes, held until the refusal is sent
        return ResourceExhausted(
            f"this embedder is busy: {self.admitted:,} pixels of other calls are being decoded "
            f"and it takes on at most {self.limits.max_inflight_pixels:,} at once "
            f"(max_inflight_pixels); this request's {pixels:,} found no room in {waited_s:.1f} s: "
            "retry with backoff, or send fewer or smaller images per call"
        )

    def release(self, pixels: int) -> None:
        """Give back an image's share once it is prepared (or will never be)."""
        if pixels <= 0:
            return
        self.admitted -= pixels
        PIXELS_ADMITTED.set(self.admitted)
        self._since_trim += pixels * BYTES_PER_DECODED_PIXEL
        self._grant()
        self._maybe_trim()

    def _take(self, pixels: int) -> None:
        self.admitted += pixels
        PIXELS_ADMITTED.set(self.admitted)

    def _grant(self) -> None:
        while self._waiting:
            pixels, turn = self._waiting[0]
            if turn.done():  # given up, not yet removed
                self._waiting.popleft()
                continue
            if self.admitted + pixels > self.limits.max_inflight_pixels:
                return  # first come, first served: a large call is not starved by small ones
            self._waiting.popleft()
            self._take(pixels)
            turn.set_result(None)

    def _maybe_trim(self) -> None:
        """Arm a trim a little later, when enough went through since the last one."""
        every = self.limits.trim_after_mb * 1024 * 1024
        if not every or self._since_trim < every or self._trim_timer is not None:
            return
        self._trim_timer = asyncio.get_running_loop().call_later(TRIM_DELAY_S, self._trim_if_idle)

    def _trim_if_idle(self) -> None:
        self._trim_timer = None
        if self.admitted or self._trimming:
            return  # the release that empties the budget arms it again
        self._since_trim = 0
        self._trimming = True

        def done(_: object) -> None:
            self._trimming = False

        loop = asyncio.get_running_loop()
        loop.run_in_executor(None, release_freed_memory).add_done_callback(done)
