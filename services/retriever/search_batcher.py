"""Coalescing of concurrent small searches of one shard into one FAISS batch search.

Small searches ran on the event loop (``LocalShard.search_small``), one at a time: with 8
batch-1 clients each call paid its own FAISS call, lock and result building while the loop
could serve no other request (issue 13, bench/peers/README.md). Here a search of at most
``JOIN_MAX_QUERIES`` queries joins the queue of its shard's searches with the same field, k,
filter, exclusions, params and result options (a ``FieldSearch`` alike but for its queries),
and per such key one group runs at a time:

- on an idle loop (no other callback ready to run) the group runs at the loop's next turn, on
  the loop as before: a lone caller waits no timer, only that one turn;
- when other callbacks are ready (other requests being handled) it waits up to
  ``GATHER_ROUNDS`` more turns for them, then runs on a worker thread, and the searches that
  arrive meanwhile gather into the next group, run when this one ends. A group holds at most
  ``search_coalesce_max_queries`` queries (``EXACT_MAX_QUERIES`` where it may scan exactly).

Each caller keeps its own request: only identical search settings share a group (the filter
is part of the key; the batcher belongs to one shard, hence to one tenant's collection); a
caller cancelled or out of time before its group runs is left out of the search, one cancelled
while it runs gets nothing, and the others get their rows either way.
Off by default (``search_coalescing``, RetrieverSettings), which is the previous path: on the
2 shared cores measured (bench/peers/README.md, "Search coalescing") the worker-thread hop of
each group cost more server CPU than the shared FAISS calls saved, since a batch-1 HNSW
search is ~1/4 of a call's server time and gRPC's per-call work, which coalescing cannot
share, the rest. It is for hosts with cores to spare beside the event loop."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
from prometheus_client import Counter

from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever import filters, gpu
from facesearch_server.retriever.shard_search import INLINE_MAX_QUERIES, FieldSearch

if TYPE_CHECKING:
    from facesearch_server.retriever.shard import LocalShard

ScoredList = list[tuple[float, pb.Point]]

# Searches this small join groups; a larger one is a batch already and goes its own way.
JOIN_MAX_QUERIES = INLINE_MAX_QUERIES
# Loop turns a group waits at most while other callbacks are ready to run (more requests in
# flight); on an idle loop it waits none.
GATHER_ROUNDS = 1
# A group that may scan the exact index stays under FAISS's BLAS threshold: the same distance
# kernel as each search alone, hence the same scores to the last bit.
EXACT_MAX_QUERIES = gpu.BLAS_THRESHOLD - 1

_enabled = False  # RetrieverSettings.search_coalescing's default
_max_queries = 64

# Mean callers per FAISS call = callers / groups: how much coalescing happens under a load.
GROUPS = Counter(
    "facesearch_retriever_search_groups", "FAISS searches run for coalesced small searches."
)
CALLERS = Counter(
    "facesearch_retriever_search_group_callers",
    "Small searches answered by those FAISS searches (callers / groups = mean group size).",
)


def configure(enabled: bool, max_queries: int) -> None:
    """Process-wide (RetrieverSettings.search_coalescing / search_coalesce_max_queries)."""
    global _enabled, _max_queries
    if max_queries < 1:
        raise ValueError(f"max_queries is {max_queries}; it must be at least 1")
    _enabled = enabled
    _max_queries = max_queries


def enabled() -> bool:
    return _enabled


@dataclass(eq=False)
class _Call:
    queries: np.ndarray
    future: asyncio.Future[list[ScoredList]]


@dataclass(eq=False)
class _Group:
    # Its first caller's search: the others share all of it but the queries (the key), which
    # are each call's own and stacked when the group runs.
    search: FieldSearch
    cap: int
    calls: list[_Call] = field(default_factory=list)
    nq: int = 0
    rounds: int = 0


def _loop_busy(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether other callbacks wait to run on the loop (other requests being handled): the
    sign that more searches are on their way. CPython's loop keeps them in ``_ready``; on a
    loop without it every group counts as idle, i.e. searches run as they would alone."""
    return len(getattr(loop, "_ready", ())) > 0


class SearchBatcher:
    """The coalescing front of one ``LocalShard``'s searches (on the event loop only).

    Per search key, groups queue in arrival order and one runs at a time: on the loop when it
    is idle and the group small (``LocalShard.search_small``), else on a worker thread, while
    the next group gathers the searches that arrive meanwhile.
    """

    def __init__(self, shard: LocalShard) -> None:
        self.shard = shard
        self._queues: dict[tuple[object, ...], deque[_Group]] = {}
        self._busy: set[tuple[object, ...]] = set()  # keys with a group on a worker thread
        self._running: set[asyncio.Task[None]] = set()
        # What coalescing did here (tests): groups run and the callers they answered.
        self.groups = 0
        self.callers = 0

    async def search(self, search: FieldSearch, *, filter_key: bytes) -> list[ScoredList]:
        """``LocalShard.search``'s answer; ``filter_key`` identifies ``search.pred`` (its
        serialised filter: two callers with equal keys must have equal predicates)."""
        if not _enabled or len(search.queries) > JOIN_MAX_QUERIES:
            return await self.search_alone(search)
        loop = asyncio.get_running_loop()
        key = _key(search, filter_key)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
            loop.call_soon(self._gather, key)
        nq = len(search.queries)
        if not queue or queue[-1].nq + nq > queue[-1].cap:
            queue.append(_Group(search, self._cap(search)))
        group = queue[-1]
        call = _Call(search.queries, loop.create_future())
        group.calls.append(call)
        group.nq += nq
        return await call.future

    async def search_alone(self, search: FieldSearch) -> list[ScoredList]:
        """The path without coalescing: on the loop when small, else on a worker thread."""
        small = self.shard.search_small(search)
        if small is not None:
            return small
        return await asyncio.to_thread(self.shard.search, search)

    def _cap(self, search: FieldSearch) -> int:
        fi = self.shard.state.fields.get(search.field)
        ann_only = (
            fi is not None
            and fi.ann is not None
            and not search.params.exact
            and search.pred is None
        )
        return _max_queries if ann_only else min(_max_queries, EXACT_MAX_QUERIES)

    def _gather(self, key: tuple[object, ...]) -> None:
        """Run the first group of ``key`` unless one of its groups is on a worker thread (its
        end calls this again)."""
        queue = self._queues.get(key)
        if not queue or key in self._busy:
            return
        loop = asyncio.get_running_loop()
        group = queue[0]
        busy = _loop_busy(loop)
        if busy and group.rounds < GATHER_ROUNDS and group.nq < group.cap:
            group.rounds += 1  # the callbacks ahead of it may bring more searches
            loop.call_soon(self._gather, key)
            return
        queue.popleft()
        if not queue:
            del self._queues[key]
        live = [c for c in group.calls if not c.future.done()]
        if live:
            self.groups += 1
            self.callers += len(live)
            GROUPS.inc()
            CALLERS.inc(len(live))
            q = live[0].queries if len(live) == 1 else np.vstack([c.queries for c in live])
            search = replace(group.search, queries=q)
            if busy or not self._inline(live, search):
                self._busy.add(key)
                task = loop.create_task(self._in_thread(key, live, search))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
                return
        if key in self._queues:
            loop.call_soon(self._gather, key)

    def _inline(self, live: list[_Call], search: FieldSearch) -> bool:
        """Answer on the loop when the search is small; whether it was."""
        try:
            rows = self.shard.search_small(search)
        except Exception as exc:
            _fail(live, exc)
            return True
        if rows is None:
            return False
        _answer(live, rows)
        return True

    async def _in_thread(
        self, key: tuple[object, ...], live: list[_Call], search: FieldSearch
    ) -> None:
        try:
            rows = await asyncio.to_thread(self.shard.search, search)
        except BaseException as exc:
            _fail(live, exc)
            if not isinstance(exc, Exception):
                raise
        else:
            _answer(live, rows)
        finally:
            self._busy.discard(key)
            self._gather(key)


def _key(search: FieldSearch, filter_key: bytes) -> tuple[object, ...]:
    """What searches must share to share a FAISS call: all but their queries. The filter counts
    by its serialised form and by the schema types its predicate was compiled against."""
    return (
        search.field,
        search.k,
        filter_key,
        tuple(sorted(filters.field_types(search.pred).items())),
        tuple(search.exclude),
        search.params.SerializeToString(deterministic=True),
        search.with_meta,
        search.with_vectors,
    )


def _answer(live: list[_Call], rows: list[ScoredList]) -> None:
    at = 0
    for c in live:
        n = len(c.queries)
        if not c.future.done():  # cancelled while its group ran: nobody to answer
            c.future.set_result(rows[at : at + n])
        at += n


def _fail(live: list[_Call], exc: BaseException) -> None:
    for c in live:
        if c.future.done():
            continue
        if isinstance(exc, asyncio.CancelledError):
            c.future.cancel()
        else:
            c.future.set_exception(exc)
