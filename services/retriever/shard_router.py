"""The shards of one collection behind one interface, ``ShardSet``, with two kinds of shard:
``LocalShardHandle`` (a shard in this process) and ``RemoteShardHandle`` (a shard held by a
shard server, reached through the internal RetrieverShard service). Fan-out is parallel,
bounded by the caller's deadline; top-k lists are merged; a shard that does not answer fails
the call with UNAVAILABLE unless the caller allowed partial results.
"""

from __future__ import annotations

import asyncio
import heapq
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf import timestamp_pb2

from facesearch_contract.limits import max_items, value_range
from facesearch_contract.v1 import common_pb2 as cpb
from facesearch_contract.v1 import retriever_internal_pb2 as ipb
from facesearch_contract.v1 import retriever_internal_service_pb2_grpc as ipb_grpc
from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever import filters, similarity_profile
from facesearch_server.retriever.filters import Predicate
from facesearch_server.retriever.shard import LocalShard
from facesearch_server.retriever.shard_search import FieldSearch
from facesearch_server.runtime import errors

T = TypeVar("T")
ScoredList = list[tuple[float, pb.Point]]


@dataclass
class CallBudget:
    """How long a fan-out may take. No credentials: a router calls its shard servers as itself
    (a trusted peer), never with the tenant's."""

    timeout: float | None = None


@dataclass
class ShardReport:
    number: int
    location: str
    available: bool
    points: int = 0
    wal_entries: int = 0
    last_snapshot: float = 0.0
    fields: list[pb.VectorFieldStats] = field(default_factory=list)
    memory_bytes: int = 0
    disk_bytes: int = 0


@dataclass
class ShardPage:
    """One shard's answer to a scan: points in the order they were last written."""

    points: list[pb.Point]
    last_position: int
    more: bool


class ShardHandle(Protocol):
    number: int
    location: str

    async def upsert(
        self, points: list[pb.Point], durable: bool, b: CallBudget
    ) -> tuple[int, int]: ...
    async def add_vectors(
        self, points: list[pb.Point], durable: bool, b: CallBudget
    ) -> tuple[int, int]: ...
    async def add_field(self, spec: pb.VectorFieldSpec, b: CallBudget) -> bool: ...
    async def delete_ids(self, ids: list[str], b: CallBudget) -> int: ...
    async def delete_filter(self, flt: cpb.Filter, pred: Predicate, b: CallBudget) -> int: ...
    async def get(self, ids: list[str], with_vectors: bool, b: CallBudget) -> list[pb.Point]: ...
    async def get_matching(
        self, flt: cpb.Filter, pred: Predicate, field: str, limit: int, b: CallBudget
    ) -> list[pb.Point]: ...
    async def scan(
        self, after: int, limit: int, with_vectors: bool, b: CallBudget
    ) -> ShardPage: ...
    async def search(self, req: ShardSearch, b: CallBudget) -> list[ScoredList]: ...
    async def report(self, b: CallBudget) -> ShardReport: ...
    async def snapshot(self, b: CallBudget) -> int: ...
    async def drop(self, b: CallBudget) -> None: ...
    async def close(self) -> None: ...


@dataclass(frozen=True, eq=False)
class ShardSearch:
    """A batch of single-vector queries against one field of every shard: the search each
    shard runs, with the model its field holds and the filter ``search.pred`` was compiled
    from (shard servers compile it again; coalescing keys on it)."""

    search: FieldSearch
    model_id: str
    flt: cpb.Filter | None


class ShardDown(Exception):
    def __init__(self, number: int, location: str, why: str) -> None:
        super().__init__(f"shard {number} ({location}) is unavailable: {why}")
        self.number = number


class LocalShardHandle:
    """A shard in this process; blocking FAISS work runs in worker threads."""

    def __init__(self, number: int, shard: LocalShard) -> None:
        self.number = number
        self.location = "local"
        self.shard = shard

    async def upsert(self, points: list[pb.Point], durable: bool, b: CallBudget) -> tuple[int, int]:
        return await asyncio.to_thread(self.shard.upsert, points, durable)

    async def add_vectors(
        self, points: list[pb.Point], durable: bool, b: CallBudget
    ) -> tuple[int, int]:
        return await asyncio.to_thread(self.shard.add_vectors, points, durable)

    async def add_field(self, spec: pb.VectorFieldSpec, b: CallBudget) -> bool:
        # The field list is the collection's: the catalog saves it.
        return await asyncio.to_thread(self.shard.add_field, spec)

    async def delete_ids(self, ids: list[str], b: CallBudget) -> int:
        return await asyncio.to_thread(self.shard.delete_ids, ids)

    async def delete_filter(self, flt: cpb.Filter, pred: Predicate, b: CallBudget) -> int:
        return await asyncio.to_thread(self.shard.delete_matching, pred)

    async def get(self, ids: list[str], with_vectors: bool, b: CallBudget) -> list[pb.Point]:
        return await asyncio.to_thread(self.shard.get, ids, with_vectors)

    async def get_matching(
        self, flt: cpb.Filter, pred: Predicate, field: str, limit: int, b: CallBudget
    ) -> list[pb.Point]:
        return await asyncio.to_thread(self.shard.get_matching, pred, field, limit)

    async def scan(self, after: int, limit: int, with_vectors: bool, b: CallBudget) -> ShardPage:
        return ShardPage(*await asyncio.to_thread(self.shard.scan, after, limit, with_vectors))

    async def search(self, req: ShardSearch, b: CallBudget) -> list[ScoredList]:
        # Small searches are answered on the event loop, concurrent ones coalesced into one
        # FAISS batch (search_batcher); the rest run on a worker thread.
        flt = req.flt
        return await self.shard.batcher.search(
            req.search,
            filter_key=flt.SerializeToString(deterministic=True) if flt is not None else b"",
        )

    async def report(self, b: CallBudget) -> ShardReport:
        s = self.shard
        if s.profiles_stale():  # reports also serve fused searches: no hop when nothing to do
            await asyncio.to_thread(s.refresh_profiles)
        return ShardReport(
            number=self.number,
            location=self.location,
            available=True,
            points=s.count(),
            wal_entries=s.wal.entries,
            last_snapshot=s.last_snapshot,
            fields=s.field_stats(),
            memory_bytes=s.memory_bytes(),
            disk_bytes=await asyncio.to_thread(s.disk_bytes),
        )

    async def snapshot(self, b: CallBudget) -> int:
        return await asyncio.to_thread(self.shard.snapshot)

    async def drop(self, b: CallBudget) -> None:
        await asyncio.to_thread(self.shard.destroy)

    async def close(self) -> None:
        await asyncio.to_thread(self.shard.close)


# What one request to a shard server may carry, as the internal contract declares it
# (retriever_internal.proto).
MAX_REMOTE_QUERIES = max_items(ipb.ShardSearchRequest, "queries")
MAX_REMOTE_GET_IDS = max_items(ipb.ShardGetRequest, "ids")
_, MAX_REMOTE_K = value_range(ipb.ShardSearchRequest, "k")


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(i, min(n, i + size)) for i in range(0, n, size)]


def _shard_filter(flt: cpb.Filter, pred: Predicate | None) -> ipb.ShardFilter:
    """The filter plus the types the router compiled it against: the shard server has no
    schema of its own."""
    return ipb.ShardFilter(filter=flt, field_types=filters.field_types(pred))


class RemoteShardHandle:
    """Shard ``number`` of the router's collection ``uid``, held by a shard server and reached
    through the internal RetrieverShard service. The router calls as itself (its mTLS
    certificate, a trusted peer of the shard server), never with the tenant's credentials.
    Requests are cut to the internal contract's limits: the router's own searches (fused
    candidates, person terms) can ask for more than one request may carry."""

    def __init__(
        self,
        number: int,
        address: str,
        channel: grpc.aio.Channel,
        uid: str,
        max_k: int = MAX_REMOTE_K,
        max_queries: int = MAX_REMOTE_QUERIES,
        max_get_ids: int = MAX_REMOTE_GET_IDS,
    ):
        self.number = number
        self.location = address
        self.stub = ipb_grpc.RetrieverShardStub(channel)
        self.ref = ipb.ShardRef(collection_uid=uid, shard=number)
        self.max_k = max_k
        self.max_queries = max_queries
        self.max_get_ids = max_get_ids

    async def _call(self, method: str, request: Any, b: CallBudget) -> Any:
        try:
            return await getattr(self.stub, method)(request, timeout=b.timeout)
        except grpc.aio.AioRpcError as exc:
            err = errors.from_rpc_error(exc, f"shard {self.number} ({self.location})")
            if errors.peer_down(err):
                raise ShardDown(self.number, self.location, err.message) from exc
            raise err from exc

    async def create(self, spec: pb.CreateCollectionRequest, b: CallBudget) -> None:
        """Create the shard (a router that crashed mid-create and retries finds it)."""
        req = ipb.OpenShardRequest(ref=self.ref, vector_fields=spec.vector_fields, create=True)
        await self._call("OpenShard", req, b)

    async def upsert(self, points: list[pb.Point], durable: bool, b: CallBudget) -> tuple[int, int]:
        req = ipb.ShardUpsertRequest(ref=self.ref, points=points, durable=durable)
        r = await self._call("UpsertShard", req, b)
        return r.upserted, r.replaced

    async def add_vectors(
        self, points: list[pb.Point], durable: bool, b: CallBudget
    ) -> tuple[int, int]:
        req = ipb.ShardUpsertRequest(
            ref=self.ref, points=points, durable=durable, mode=pb.UPSERT_MODE_ADD_VECTORS
        )
        r = await self._call("UpsertShard", req, b)
        return r.upserted, r.skipped

    async def add_field(self, spec: pb.VectorFieldSpec, b: CallBudget) -> bool:
        req = ipb.AddShardFieldRequest(ref=self.ref, field=spec)
        return bool((await self._call("AddShardField", req, b)).added)

    async def delete_ids(self, ids: list[str], b: CallBudget) -> int:
        req = ipb.ShardDeleteRequest(ref=self.ref, ids=pb.IdList(ids=ids))
        return int((await self._call("DeleteShard", req, b)).deleted)

    async def delete_filter(self, flt: cpb.Filter, pred: Predicate, b: CallBudget) -> int:
        req = ipb.ShardDeleteRequest(ref=self.ref, filter=_shard_filter(flt, pred))
        return int((await self._call("DeleteShard", req, b)).deleted)

    async def get(self, ids: list[str], with_vectors: bool, b: CallBudget) -> list[pb.Point]:
        async def part(lo: int, hi: int) -> list[pb.Point]:
            req = ipb.ShardGetRequest(ref=self.ref, ids=ids[lo:hi], with_vectors=with_vectors)
            return list((await self._call("GetShard", req, b)).points)

        parts = await asyncio.gather(
            *(part(lo, hi) for lo, hi in _chunks(len(ids), self.max_get_ids))
        )
        return [p for pts in parts for p in pts]

    async def get_matching(
        self, flt: cpb.Filter, pred: Predicate, field: str, limit: int, b: CallBudget
    ) -> list[pb.Point]:
        req = ipb.ShardGetRequest(
            ref=self.ref,
            filter=_shard_filter(flt, pred),
            limit=limit,
            vector_field=field,
            with_vectors=True,
        )
        return list((await self._call("GetShard", req, b)).points)

    async def scan(self, after: int, limit: int, with_vectors: bool, b: CallBudget) -> ShardPage:
        req = ipb.ShardScanRequest(
            ref=self.ref, after_position=after, limit=limit, with_vectors=with_vectors
        )
        r = await self._call("ScanShard", req, b)
        return ShardPage(list(r.points), int(r.last_position), bool(r.more))

    async def search(self, req: ShardSearch, b: CallBudget) -> list[ScoredList]:
        parts = await asyncio.gather(
            *(
                self._search_part(req, lo, hi, b)
                for lo, hi in _chunks(len(req.search.queries), self.max_queries)
            )
        )
        return [row for rows in parts for row in rows]

    async def _search_part(
        self, req: ShardSearch, lo: int, hi: int, b: CallBudget
    ) -> list[ScoredList]:
        s = req.search
        sreq = ipb.ShardSearchRequest(
            ref=self.ref,
            field=s.field,
            # A fused search never asks for more than the contract's k; min() keeps a handle
            # given a smaller max_k (tests) within it.
            k=min(s.k, self.max_k),
            exclude_ids=s.exclude,
            params=s.params,
            with_metadata=s.with_meta,
            with_vectors=s.with_vectors,
        )
        if req.flt is not None:
            sreq.filter.CopyFrom(_shard_filter(req.flt, s.pred))
        for q in s.queries[lo:hi]:
            sreq.queries.add().values.extend(q.tolist())
        resp = await self._call("SearchShard", sreq, b)
        return [[(h.score, h.point) for h in result.hits] for result in resp.results]

    async def report(self, b: CallBudget) -> ShardReport:
        try:
            req = ipb.DescribeShardRequest(ref=self.ref)
            d = (await self._call("DescribeShard", req, b)).shard
        except ShardDown:
            return ShardReport(self.number, self.location, available=False)
        return ShardReport(
            number=self.number,
            location=self.location,
            available=True,
            points=d.points,
            wal_entries=d.wal_entries,
            last_snapshot=d.last_snapshot.ToSeconds() if d.HasField("last_snapshot") else 0,
            fields=list(d.field_stats),
            memory_bytes=d.memory_bytes,
            disk_bytes=d.disk_bytes,
        )

    async def snapshot(self, b: CallBudget) -> int:
        req = ipb.SnapshotShardRequest(ref=self.ref)
        return int((await self._call("SnapshotShard", req, b)).sequence)

    async def drop(self, b: CallBudget) -> None:
        try:
            await self._call("DropShard", ipb.DropShardRequest(ref=self.ref), b)
        except errors.NotFound:
            pass  # never created there, or an earlier drop got that far

    async def close(self) -> None:
        return None


def merge_field_stats(
    spec: pb.VectorFieldSpec, per: list[pb.VectorFieldStats]
) -> pb.VectorFieldStats:
    """One vector field's stats over the shards that reported it (``per``)."""
    agg = pb.VectorFieldStats(name=spec.name)
    agg.effective_index.CopyFrom(per[0].effective_index if per else spec.index)
    # Each shard tunes its own index: show the widest width and the lowest recall.
    agg.effective_index.nprobe = max((f.effective_index.nprobe for f in per), default=0)
    agg.effective_index.ef_search = max((f.effective_index.ef_search for f in per), default=0)
    measured = [f.measured_recall for f in per if f.measured_recall > 0]
    agg.measured_recall = min(measured) if len(measured) == len(per) and per else 0.0
    above = [f.measured_above_threshold_recall for f in per if f.measured_above_threshold_recall]
    agg.measured_above_threshold_recall = min(above) if len(above) == len(per) and per else 0.0
    states = [f.build_state for f in per] or [pb.BUILD_STATE_EXACT]
    if pb.BUILD_STATE_BUILDING in states:
        agg.build_state = pb.BUILD_STATE_BUILDING
    elif all(s == pb.BUILD_STATE_READY for s in states):
        agg.build_state = pb.BUILD_STATE_READY
    else:
        agg.build_state = pb.BUILD_STATE_EXACT
    building = [f.build_progress for f in per if f.build_state == pb.BUILD_STATE_BUILDING]
    agg.build_progress = (
        sum(building) / len(building)
        if building
        else (1.0 if agg.build_state == pb.BUILD_STATE_READY else 0.0)
    )
    agg.tombstones = sum(f.tombstones for f in per)
    agg.vectors = sum(f.vectors for f in per)
    agg.indexed_vectors = sum(f.indexed_vectors for f in per)
    agg.pending_purge = sum(f.pending_purge for f in per)
    agg.index_bytes = sum(f.index_bytes for f in per)
    agg.points_without = sum(f.points_without for f in per)
    profile = similarity_profile.merge(
        [f.similarity_profile for f in per if f.HasField("similarity_profile")]
    )
    if profile is not None:
        agg.similarity_profile.CopyFrom(profile)
    return agg


def shard_of(point_id: str, count: int) -> int:
    """Stable across processes and restarts (Python's hash() is salted per process)."""
    return zlib.crc32(point_id.encode()) % count


class ShardSet:
    """A collection's shards: routing by id hash, parallel fan-out, top-k merge."""

    def __init__(self, handles: list[ShardHandle]) -> None:
        self.handles = handles

    @property
    def count(self) -> int:
        return len(self.handles)

    def by_shard(self, ids: list[str]) -> dict[int, list[int]]:
        """Positions in ``ids`` grouped by the shard owning each."""
        groups: dict[int, list[int]] = {}
        for i, pid in enumerate(ids):
            groups.setdefault(shard_of(pid, self.count), []).append(i)
        return groups

    async def _fan(
        self,
        calls: dict[int, Callable[[], Awaitable[T]]],
        allow_partial: bool,
        b: CallBudget,
    ) -> tuple[dict[int, T], list[int]]:
        """Run one call per shard in parallel; (answers, missing shards)."""

        async def one(n: int, fn: Callable[[], Awaitable[T]]) -> T:
            if b.timeout is None:
                return await fn()
            try:
                return await asyncio.wait_for(fn(), b.timeout)
            except TimeoutError as exc:
                where = self.handles[n].location
                if where == "local":
                    # Our own work ran out of time: that is the caller's deadline, not an outage.
                    raise errors.DeadlineExceeded(
                        f"shard {n} did not finish within the call's deadline ({b.timeout:.3g}s)"
                    ) from exc
                raise ShardDown(n, where, "no answer within the deadline") from exc

        names = list(calls)
        results = await asyncio.gather(*(one(n, calls[n]) for n in names), return_exceptions=True)
        answers: dict[int, T] = {}
        missing: list[int] = []
        first_down: ShardDown | None = None
        for n, r in zip(names, results, strict=True):
            if isinstance(r, ShardDown):
                missing.append(n)
                first_down = first_down or r
            elif isinstance(r, BaseException):
                raise r
            else:
                answers[n] = r
        if missing and not allow_partial:
            assert first_down is not None
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise errors.Unavailable(
                f"{first_down}{more}; retry, or set allow_partial to get the other shards' results"
            )
        return answers, sorted(missing)

    async def upsert(self, points: list[pb.Point], durable: bool, b: CallBudget) -> tuple[int, int]:
        groups = self.by_shard([p.id for p in points])
        calls = {
            n: (lambda n=n, pos=pos: self.handles[n].upsert([points[i] for i in pos], durable, b))
            for n, pos in groups.items()
        }
        answers, _ = await self._fan(calls, False, b)
        return sum(a[0] for a in answers.values()), sum(a[1] for a in answers.values())

    async def add_vectors(
        self, points: list[pb.Point], durable: bool, b: CallBudget
    ) -> tuple[int, int]:
        """(points changed, points skipped) of an ADD_VECTORS upsert."""
        groups = self.by_shard([p.id for p in points])
        calls = {
            n: (
                lambda n=n, pos=pos: self.handles[n].add_vectors(
                    [points[i] for i in pos], durable, b
                )
            )
            for n, pos in groups.items()
        }
        answers, _ = await self._fan(calls, False, b)
        return sum(a[0] for a in answers.values()), sum(a[1] for a in answers.values())

    async def add_field(self, spec: pb.VectorFieldSpec, b: CallBudget) -> bool:
        """Add the field to every shard (all must answer); True when any shard lacked it."""
        calls = {h.number: (lambda h=h: h.add_field(spec, b)) for h in self.handles}
        answers, _ = await self._fan(calls, False, b)
        return any(answers.values())

    async def delete_ids(self, ids: list[str], b: CallBudget) -> int:
        groups = self.by_shard(ids)
        calls = {
            n: (lambda n=n, pos=pos: self.handles[n].delete_ids([ids[i] for i in pos], b))
            for n, pos in groups.items()
        }
        answers, _ = await self._fan(calls, False, b)
        return sum(answers.values())

    async def delete_filter(self, flt: cpb.Filter, pred: Predicate, b: CallBudget) -> int:
        calls = {h.number: (lambda h=h: h.delete_filter(flt, pred, b)) for h in self.handles}
        answers, _ = await self._fan(calls, False, b)
        return sum(answers.values())

    async def get(
        self, ids: list[str], with_vectors: bool, b: CallBudget, allow_partial: bool = False
    ) -> list[pb.Point]:
        groups = self.by_shard(ids)
        calls = {
            n: (lambda n=n, pos=pos: self.handles[n].get([ids[i] for i in pos], with_vectors, b))
            for n, pos in groups.items()
        }
        answers, _ = await self._fan(calls, allow_partial, b)
        found = {p.id: p for pts in answers.values() for p in pts}
        return [found[i] for i in dict.fromkeys(ids) if i in found]

    async def get_matching(
        self,
        flt: cpb.Filter,
        pred: Predicate,
        field: str,
        limit: int,
        b: CallBudget,
        allow_partial: bool = False,
    ) -> tuple[list[pb.Point], list[int]]:
        calls = {
            h.number: (lambda h=h: h.get_matching(flt, pred, field, limit, b)) for h in self.handles
        }
        answers, missing = await self._fan(calls, allow_partial, b)
        pts = [p for n in sorted(answers) for p in answers[n]]
        return pts[:limit], missing

    async def scan(
        self, shard: int, after: int, limit: int, with_vectors: bool, b: CallBudget
    ) -> ShardPage:
        """One page of one shard (Scan reads the shards one after the other). A shard that
        does not answer is UNAVAILABLE: a scan has no partial answer to give."""
        handle = self.handles[shard]
        answers, _ = await self._fan(
            {shard: lambda: handle.scan(after, limit, with_vectors, b)}, False, b
        )
        return answers[shard]

    async def search(
        self, req: ShardSearch, b: CallBudget, allow_partial: bool
    ) -> tuple[list[ScoredList], list[int]]:
        calls = {h.number: (lambda h=h: h.search(req, b)) for h in self.handles}
        answers, missing = await self._fan(calls, allow_partial, b)
        k = req.search.k
        merged: list[ScoredList] = []
        for qi in range(len(req.search.queries)):
            rows = [answers[n][qi] for n in sorted(answers)]
            if len(rows) == 1:
                merged.append(rows[0][:k])
            else:
                merged.append(heapq.nlargest(k, (h for r in rows for h in r), key=lambda h: h[0]))
        return merged, missing

    async def reports(self, b: CallBudget) -> list[ShardReport]:
        calls = {h.number: (lambda h=h: h.report(b)) for h in self.handles}
        answers, missing = await self._fan(calls, True, b)
        for n in missing:
            answers[n] = ShardReport(n, self.handles[n].location, available=False)
        return [answers[n] for n in sorted(answers)]

    async def snapshot(self, b: CallBudget) -> int:
        calls = {h.number: (lambda h=h: h.snapshot(b)) for h in self.handles}
        answers, _ = await self._fan(calls, False, b)
        return max(answers.values(), default=0)

    async def drop(self, b: CallBudget) -> None:
        calls = {h.number: (lambda h=h: h.drop(b)) for h in self.handles}
        await self._fan(calls, False, b)

    async def close(self) -> None:
        await asyncio.gather(*(h.close() for h in self.handles))


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts
