"""One shard: per vector field an exact FAISS index (IndexIDMap2 over a flat index) plus an
optional approximate one, the records' ids and metadata, a write-ahead log and snapshots.

Every record gets a fresh int64 label on each upsert; labels are never reused, so a label in an
immutable approximate index that no longer names a live record is a tombstone, and a deleted
record cannot come back through a stale index entry. Writes are serialised by ``_writer``
(WAL append, then apply); searches share ``_rw`` and only wait while a write is applied.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever import (
    gpu,
    index_build,
    index_tuning,
    records,
    similarity,
    snapshot,
)
from facesearch_server.retriever.filters import Predicate
from facesearch_server.retriever.wal import OP_DELETE, OP_UPSERT, WriteAheadLog, make_dirs

log = logging.getLogger("facesearch.retriever.shard")

# A filter matching at most this many records is answered exactly over just those records:
# cheaper than the approximate index and never short of results.
FLAT_FILTER_MAX = 20_000

Hit = tuple[float, str, int]  # (score, id, label)
# String fields with a value -> labels index, so "every face of person X" or "of media Y"
# (deletes, person terms, filters) does not scan every record.
INDEXED_FIELDS = ("person_id", "media_id")


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


@dataclass
class Record:
    id: str
    meta: records.Metadata
    fields: tuple[str, ...]


@dataclass
class FieldIndex:
    spec: pb.VectorFieldSpec
    flat: faiss.Index
    ann: index_build.AnnIndex | None = None
    tombstones: set[int] = field(default_factory=set)
    delta: set[int] = field(default_factory=set)
    building: bool = False
    progress: float = 0.0
    # Labels of records forgotten by a filter / person delete that the built index still holds.
    # While any remain, a rebuild is due and the index is left out of snapshots, so a face the
    # caller asked to forget is not kept on disk until churn happens to trigger a rebuild.
    purge: set[int] = field(default_factory=set)

    @property
    def kind(self) -> int:
        return self.spec.index.kind

    def new_flat(self) -> faiss.Index:
        return faiss.IndexIDMap2(
            faiss.IndexFlat(self.spec.dimension, similarity.faiss_metric(self.spec.metric))
        )

    def to_score(self, dist: np.ndarray) -> np.ndarray:
        return -dist if self.spec.metric == pb.METRIC_L2 else dist

    def exact_scores(self, q: np.ndarray, vecs: np.ndarray) -> np.ndarray:
        return similarity.exact_scores(self.spec.metric, q, vecs)


def _batch(labels: np.ndarray | list[int] | set[int]) -> faiss.IDSelector:
    arr = np.fromiter(labels, dtype=np.int64) if isinstance(labels, set) else labels
    return faiss.IDSelectorBatch(np.ascontiguousarray(arr, dtype=np.int64))


class LocalShard:
    def __init__(
        self,
        directory: Path,
        fields: list[pb.VectorFieldSpec],
        on_build_needed: Callable[[LocalShard, str], None] | None = None,
    ) -> None:
        self.dir = directory
        make_dirs(self.dir)
        self.fields: dict[str, FieldIndex] = {}
        for spec in fields:
            fi = FieldIndex(spec=spec, flat=None)  # type: ignore[arg-type]
            fi.flat = fi.new_flat()
            self.fields[spec.name] = fi
        self.primary = fields[0].name
        self.records: dict[int, Record] = {}
        self.ids: dict[str, int] = {}
        self.postings: dict[str, dict[str, set[int]]] = {f: {} for f in INDEXED_FIELDS}
        self.next_label = 1
        self.wal = WriteAheadLog(self.dir / "wal")
        self.last_snapshot = 0.0
        self._writer = threading.Lock()
        self._rw = RWLock()
        self._snapshotting = threading.Lock()
        # Guards the ``building`` flags: writers call _maybe_build after leaving ``_writer``, so
        # two of them could otherwise both see "not building" and queue the same build twice.
        self._build_flags = threading.Lock()
        self.closed = threading.Event()
        self._on_build_needed = on_build_needed
        self._open()

    # ---- start-up ----------------------------------------------------------------------

    def _open(self) -> None:
        seq = 0
        path = snapshot.latest(self.dir)
        if path is not None:
            state = snapshot.load(path)
            seq = state.seq
            self.next_label = state.next_label
            self.last_snapshot = state.created
            for name, blob in state.flat.items():
                if name in self.fields:
                    self.fields[name].flat = snapshot.deserialize(blob)
            present: dict[int, list[str]] = {}
            for name, fi in self.fields.items():
                for label in faiss.vector_to_array(fi.flat.id_map).tolist():
                    present.setdefault(label, []).append(name)
            for label, p in zip(state.labels.tolist(), state.points.points, strict=True):
                meta = records.metadata_from_proto(p.metadata)
                self.records[label] = Record(p.id, meta, tuple(present.get(label, ())))
                self.ids[p.id] = label
                self._post(label, meta)
            for name, saved in state.ann.items():
                fi = self.fields[name]
                fi.ann = index_build.AnnIndex(
                    snapshot.deserialize(saved.blob),
                    saved.covered,
                    fi.kind,
                    saved.nlist,
                    int(saved.blob.nbytes),
                    saved.build_seconds,
                    saved.tuning,
                )
        replayed = 0
        for _seq, op, payload in self.wal.replay(seq):
            if op == OP_UPSERT:
                req = pb.UpsertRequest()
                req.ParseFromString(payload)
                self._apply_upsert(list(req.points))
            elif op == OP_DELETE:
                ids = pb.IdList()
                ids.ParseFromString(payload)
                labels = [self.ids[i] for i in ids.ids if i in self.ids]
                self._apply_delete(labels)
                # The log does not say whether this was a "forget" (filter) delete, so any
                # deleted vector the snapshot's built index still holds is purged by a rebuild.
                for fi in self.fields.values():
                    if fi.ann is not None:
                        fi.purge.update(lab for lab in labels if lab in fi.tombstones)
            replayed += 1
        for fi in self.fields.values():
            if fi.ann is not None:
                self._reconcile(fi)
        if replayed:
            log.info("wal replayed", extra={"shard": str(self.dir), "entries": replayed})

    def _reconcile(self, fi: FieldIndex) -> None:
        """Tombstones and delta of a built index against the live records of its field."""
        assert fi.ann is not None
        alive = faiss.vector_to_array(fi.flat.id_map)
        covered = fi.ann.covered
        fi.tombstones = set(np.setdiff1d(covered, alive, assume_unique=True).tolist())
        fi.delta = set(np.setdiff1d(alive, covered, assume_unique=True).tolist())

    # ---- writes ------------------------------------------------------------------------

    def _vectors(self, points: list[pb.Point], name: str) -> tuple[list[int], np.ndarray]:
        rows = [i for i, p in enumerate(points) if name in p.vectors]
        dim = self.fields[name].spec.dimension
        mat = np.empty((len(rows), dim), dtype=np.float32)
        for j, i in enumerate(rows):
            mat[j] = points[i].vectors[name].values
        return rows, mat

    def _apply_upsert(self, points: list[pb.Point]) -> tuple[int, int]:
        old = [self.ids[p.id] for p in points if p.id in self.ids]
        if old:
            self._apply_delete(old)
        labels = list(range(self.next_label, self.next_label + len(points)))
        self.next_label += len(points)
        for name, fi in self.fields.items():
            rows, mat = self._vectors(points, name)
            if not rows:
                continue
            lab = np.array([labels[i] for i in rows], dtype=np.int64)
            fi.flat.add_with_ids(mat, lab)
            if fi.ann is not None:
                fi.delta.update(lab.tolist())
        for label, p in zip(labels, points, strict=True):
            meta = records.metadata_from_proto(p.metadata)
            self.records[label] = Record(
                p.id, meta, tuple(n for n in self.fields if n in p.vectors)
            )
            self.ids[p.id] = label
            self._post(label, meta)
        return len(points), len(old)

    def _apply_delete(self, labels: list[int]) -> int:
        by_field: dict[str, list[int]] = {}
        for label in labels:
            rec = self.records.pop(label, None)
            if rec is None:
                continue
            if self.ids.get(rec.id) == label:
                del self.ids[rec.id]
            self._unpost(label, rec.meta)
            for name in rec.fields:
                by_field.setdefault(name, []).append(label)
        for name, labs in by_field.items():
            fi = self.fields[name]
            fi.flat.remove_ids(_batch(np.array(labs, dtype=np.int64)))
            if fi.ann is not None:
                for label in labs:
                    if label in fi.delta:
                        fi.delta.discard(label)
                    elif fi.ann.covers(label):
                        fi.tombstones.add(label)
        return sum(1 for _ in labels)

    def _post(self, label: int, meta: records.Metadata) -> None:
        for f, index in self.postings.items():
            v = meta.get(f)
            if isinstance(v, str):
                index.setdefault(v, set()).add(label)

    def _unpost(self, label: int, meta: records.Metadata) -> None:
        for f, index in self.postings.items():
            v = meta.get(f)
            if isinstance(v, str) and v in index:
                index[v].discard(label)
                if not index[v]:
                    del index[v]

    def _candidates(self, pred: Predicate) -> Iterable[tuple[int, Record]]:
        """Records that may match ``pred``: via an index when its hints allow, else all."""
        best: set[int] | None = None
        for f, values in getattr(pred, "hints", ()):
            index = self.postings.get(f)
            if index is None:
                continue
            found: set[int] = set()
            for v in values:
                found |= index.get(v, set())
            if best is None or len(found) < len(best):
                best = found
        if best is None:
            return self.records.items()
        return ((lab, self.records[lab]) for lab in sorted(best) if lab in self.records)

    def upsert(self, points: list[pb.Point], durable: bool = True) -> tuple[int, int]:
        gpu.pin_threads()
        payload = pb.UpsertRequest(points=points).SerializeToString()
        with self._writer:
            self.wal.append(OP_UPSERT, payload, durable)
            with self._rw.write():
                result = self._apply_upsert(points)
        self._maybe_build()
        return result

    def delete_ids(self, ids: list[str]) -> int:
        with self._writer:
            present = [i for i in dict.fromkeys(ids) if i in self.ids]
            return self._delete_logged(present)

    def delete_matching(self, pred: Predicate) -> int:
        with self._writer:
            with self._rw.read():
                present = [r.id for _lab, r in self._candidates(pred) if pred(r.meta)]
            n = self._delete_logged(present, purge=True)
        self._maybe_build()
        return n

    def _delete_logged(self, ids: list[str], purge: bool = False) -> int:
        """Caller holds ``_writer``. Deletes are always fsynced: "forget" must stick.

        ``purge`` (deletes by filter or person: "forget this person") also gets the deleted
        vectors out of the built approximate indexes by a rebuild, not only out of results.
        """
        if not ids:
            return 0
        self.wal.append(OP_DELETE, pb.IdList(ids=ids).SerializeToString(), durable=True)
        labels = [self.ids[i] for i in ids]
        with self._rw.write():
            self._apply_delete(labels)
            if purge:
                for fi in self.fields.values():
                    if fi.ann is not None:
                        fi.purge.update(lab for lab in labels if lab in fi.tombstones)
        if not purge:
            self._maybe_build()
        return len(ids)

    def sync(self) -> None:
        with self._writer:
            self.wal.sync()

    # ---- reads -------------------------------------------------------------------------

    def count(self) -> int:
        return len(self.records)

    def _point(self, rec: Record, with_meta: bool) -> pb.Point:
        p = pb.Point(id=rec.id)
        if with_meta:
            records.metadata_to_proto(rec.meta, p.metadata)
        return p

    def _fill_vectors(self, pts: list[tuple[int, pb.Point]]) -> None:
        for name, fi in self.fields.items():
            having = [(lab, p) for lab, p in pts if name in self.records[lab].fields]
            if not having:
                continue
            mat = fi.flat.reconstruct_batch(np.array([lab for lab, _ in having], dtype=np.int64))
            for (_lab, p), row in zip(having, mat, strict=True):
                p.vectors[name].values.extend(row.tolist())
                p.model_ids[name] = fi.spec.model_id

    def get(self, ids: list[str], with_vectors: bool) -> list[pb.Point]:
        with self._rw.read():
            found = [
                (self.ids[i], self._point(self.records[self.ids[i]], True))
                for i in ids
                if i in self.ids
            ]
            if with_vectors:
                self._fill_vectors(found)
        return [p for _, p in found]

    def get_matching(self, pred: Predicate, field: str, limit: int) -> list[pb.Point]:
        """Records matching ``pred`` that have ``field``, with vectors (person queries)."""
        with self._rw.read():
            found = [
                (lab, self._point(r, True))
                for lab, r in self._candidates(pred)
                if (not field or field in r.fields) and pred(r.meta)
            ][:limit]
            self._fill_vectors(found)
        return [p for _, p in found]

    def search(
        self,
        field: str,
        queries: np.ndarray,
        k: int,
        pred: Predicate | None,
        exclude: list[str],
        params: pb.SearchParams,
        with_meta: bool,
        with_vectors: bool,
    ) -> list[list[tuple[float, pb.Point]]]:
        gpu.pin_threads()
        fi = self.fields[field]
        with self._rw.read():
            hits = self._search_locked(fi, queries, k, pred, exclude, params)
            out: list[list[tuple[float, pb.Point]]] = []
            if not with_meta and not with_vectors:
                # The hot path of plain searches: ids and scores only.
                return [[(s, pb.Point(id=i)) for s, i, _l in row] for row in hits]
            for row in hits:
                pts = [(lab, self._point(self.records[lab], with_meta)) for _s, _i, lab in row]
                if with_vectors:
                    self._fill_vectors(pts)
                out.append([(s, p) for (s, _i, _l), (_lab, p) in zip(row, pts, strict=True)])
        return out

    def _search_locked(
        self,
        fi: FieldIndex,
        q: np.ndarray,
        k: int,
        pred: Predicate | None,
        exclude: list[str],
        params: pb.SearchParams,
    ) -> list[list[Hit]]:
        nq = len(q)
        if fi.flat.ntotal == 0:
            return [[] for _ in range(nq)]
        excl = {self.ids[i] for i in exclude if i in self.ids}
        allowed: np.ndarray | None = None
        if pred is not None:
            allowed = np.fromiter(
                (
                    lab
                    for lab, r in self._candidates(pred)
                    if fi.spec.name in r.fields and lab not in excl and pred(r.meta)
                ),
                dtype=np.int64,
            )
            if len(allowed) == 0:
                return [[] for _ in range(nq)]
        ann = fi.ann
        use_ann = (
            ann is not None
            and not params.exact
            and (allowed is None or len(allowed) > FLAT_FILTER_MAX)
        )
        if not use_ann:
            if allowed is not None:
                sel: faiss.IDSelector | None = _batch(allowed)
            elif excl:
                sel = faiss.IDSelectorNot(_batch(excl))
            else:
                sel = None
            kk = min(k, fi.flat.ntotal)
            return self._run(fi, fi.flat, q, kk, faiss.SearchParameters(sel=sel) if sel else None)
        assert ann is not None
        rescore_top = min(params.rescore_top, 10_000)
        if ann.kind == pb.INDEX_KIND_IVF_PQ:
            rescore_top = max(rescore_top, index_tuning.PQ_RESCORE)
        kk = max(k, rescore_top)
        if allowed is not None:
            ann_sel: faiss.IDSelector | None = _batch(allowed)
        elif excl or fi.tombstones:
            ann_sel = faiss.IDSelectorNot(_batch(excl | fi.tombstones))
        else:
            ann_sel = None
        sp = index_build.search_parameters(ann, fi.spec.index, params, ann_sel)
        merged = self._run_ann(fi, ann, q, min(kk, ann.index.ntotal), sp, ann_sel is None)
        if fi.delta:
            delta = fi.delta - excl
            if allowed is not None:
                delta = delta & set(allowed.tolist())
            if delta:
                dsp = faiss.SearchParameters(sel=_batch(delta))
                extra = self._run(fi, fi.flat, q, min(kk, len(delta)), dsp)
                merged = [sorted(a + b, reverse=True) for a, b in zip(merged, extra, strict=True)]
        if rescore_top:
            merged = [self._rescore(fi, q[i], row) for i, row in enumerate(merged)]
        return [row[:k] for row in merged]

    def _run_ann(
        self,
        fi: FieldIndex,
        ann: index_build.AnnIndex,
        q: np.ndarray,
        k: int,
        sp: faiss.SearchParameters,
        unfiltered: bool,
    ) -> list[list[Hit]]:
        # GPU clones take no ID selectors, so only unfiltered searches go there.
        if unfiltered and ann.search_index is not ann.index:
            try:
                return self._run(fi, ann.search_index, q, k, sp)
            except RuntimeError:
                log.warning("GPU search failed; answering from the CPU index", exc_info=True)
        return self._run(fi, ann.index, q, k, sp)

    def _run(
        self,
        fi: FieldIndex,
        index: faiss.Index,
        q: np.ndarray,
        k: int,
        sp: faiss.SearchParameters | None,
    ) -> list[list[Hit]]:
        if k <= 0:
            return [[] for _ in range(len(q))]
        dist, labs = index.search(q, k, params=sp) if sp is not None else index.search(q, k)
        scores = fi.to_score(dist)
        out = []
        for srow, lrow in zip(scores.tolist(), labs.tolist(), strict=True):
            out.append(
                [
                    (s, self.records[lab].id, lab)
                    for s, lab in zip(srow, lrow, strict=True)
                    if lab >= 0 and lab in self.records
                ]
            )
        return out

    def _rescore(self, fi: FieldIndex, q: np.ndarray, row: list[Hit]) -> list[Hit]:
        if not row:
            return row
        labs = np.array([lab for _s, _i, lab in row], dtype=np.int64)
        vecs = fi.flat.reconstruct_batch(labs)
        exact = fi.exact_scores(q, vecs).tolist()
        return sorted(
            ((s, i, lab) for s, (_o, i, lab) in zip(exact, row, strict=True)), reverse=True
        )

    # ---- approximate indexes -------------------------------------------------------------

    def _maybe_build(self) -> None:
        due_fields = []
        with self._build_flags:
            for name, fi in self.fields.items():
                if fi.kind == pb.INDEX_KIND_FLAT or fi.building or self.closed.is_set():
                    continue
                n = fi.flat.ntotal
                if fi.ann is None:
                    due = n >= fi.spec.index.train_threshold
                else:
                    churn = len(fi.tombstones) + len(fi.delta)
                    due = bool(fi.purge) or churn > max(
                        16, index_build.REBUILD_FRACTION * len(fi.ann.covered)
                    )
                if due and self._on_build_needed is not None:
                    fi.building = True
                    fi.progress = 0.0
                    due_fields.append(name)
        for name in due_fields:
            assert self._on_build_needed is not None
            self._on_build_needed(self, name)

    def build_now(self, name: str) -> None:
        """Build (or rebuild) the approximate index of ``name``; runs on the build thread."""
        gpu.pin_threads()
        fi = self.fields[name]
        try:
            with self._rw.read():
                labels = faiss.vector_to_array(fi.flat.id_map).copy()
                inner = faiss.downcast_index(fi.flat.index)
                vectors = inner.reconstruct_n(0, inner.ntotal)

            def progress(x: float) -> None:
                fi.progress = x

            ann = index_build.build(
                fi.kind,
                fi.spec.dimension,
                fi.spec.metric,
                fi.spec.index,
                labels,
                vectors,
                progress,
                self.closed,
            )
            if ann is None:
                return
            with self._rw.write():
                fi.ann = ann
                self._reconcile(fi)
                # Forgotten while this build ran (so still inside it): another rebuild follows.
                fi.purge = {lab for lab in fi.purge if ann.covers(lab)}
            log.info(
                "index built",
                extra={
                    "shard": str(self.dir),
                    "field": name,
                    "n": len(labels),
                    "seconds": round(ann.build_seconds, 2),
                },
            )
        finally:
            with self._build_flags:
                fi.building = False
                fi.progress = 1.0 if fi.ann is not None else 0.0
        if fi.purge:
            self._maybe_build()

    # ---- snapshots and stats -------------------------------------------------------------

    def snapshot(self) -> int:
        """Write a snapshot and drop the log it covers; returns the sequence covered."""
        with self._snapshotting:
            with self._writer, self._rw.read():
                seq = self.wal.last_seq
                if self.closed.is_set():
                    # Closed or being dropped: writing now would recreate a deleted directory.
                    return seq
                if self.wal.entries == 0 and self.last_snapshot:
                    return seq
                self.wal.rotate()
                labels = np.fromiter(self.records.keys(), dtype=np.int64, count=len(self.records))
                recs = list(self.records.values())
                flat = {n: faiss.serialize_index(fi.flat) for n, fi in self.fields.items()}
                ann = {
                    n: snapshot.SavedAnn(
                        faiss.serialize_index(fi.ann.index),
                        fi.ann.covered,
                        fi.ann.nlist,
                        fi.ann.build_seconds,
                        fi.ann.tuning,
                    )
                    for n, fi in self.fields.items()
                    if fi.ann is not None and not fi.purge
                }
                next_label = self.next_label
            points = pb.GetResponse()
            for r in recs:
                p = points.points.add(id=r.id)
                records.metadata_to_proto(r.meta, p.metadata)
            created = time.time()
            state = snapshot.SnapshotState(seq, next_label, labels, points, flat, ann, created)
            snapshot.write(self.dir, state)
            with self._writer:
                self.wal.drop_through(seq)
            self.last_snapshot = created
            return seq

    def field_stats(self) -> list[pb.VectorFieldStats]:
        out = []
        for name, fi in self.fields.items():
            eff = pb.IndexParams()
            eff.CopyFrom(fi.spec.index)
            if fi.kind == pb.INDEX_KIND_FLAT:
                state = pb.BUILD_STATE_EXACT
            elif fi.ann is not None:
                state = pb.BUILD_STATE_READY
                if fi.ann.nlist:
                    eff.nlist = fi.ann.nlist
                if fi.kind == pb.INDEX_KIND_IVF_PQ:
                    eff.nprobe = fi.ann.width(fi.spec.index)
                else:
                    eff.ef_search = fi.ann.width(fi.spec.index)
            elif fi.building:
                state = pb.BUILD_STATE_BUILDING
            else:
                state = pb.BUILD_STATE_EXACT
            flat_bytes = fi.flat.ntotal * (fi.spec.dimension * 4 + 16)
            out.append(
                pb.VectorFieldStats(
                    name=name,
                    build_state=state,
                    build_progress=fi.progress if fi.building else (1.0 if fi.ann else 0.0),
                    effective_index=eff,
                    tombstones=len(fi.tombstones),
                    index_bytes=flat_bytes + (fi.ann.nbytes if fi.ann else 0),
                    measured_recall=fi.ann.tuning.recall if fi.ann and fi.ann.tuning else 0.0,
                )
            )
        return out

    def memory_bytes(self) -> int:
        index = sum(s.index_bytes for s in self.field_stats())
        # Records: a rough per-entry cost of the dicts plus ids; exact accounting is not worth
        # walking every metadata value.
        return index + len(self.records) * 200

    def disk_bytes(self) -> int:
        return snapshot.disk_bytes(self.dir)

    def close(self) -> None:
        self.closed.set()
        with self._writer:
            self.wal.close()

    def destroy(self) -> None:
        self.close()
        with self._snapshotting:  # a snapshot already writing finishes before the files go
            shutil.rmtree(self.dir, ignore_errors=True)
