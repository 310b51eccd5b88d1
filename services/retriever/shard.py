"""One shard: the composition of its parts, and the locks that order them.

- ``shard_state`` — per vector field a ``FieldIndex`` (exact + optional approximate index) and
  the ``RecordStore`` (records, ids, labels, value indexes); what the log is applied to;
- ``wal`` — the write-ahead log; ``shard_persistence`` + ``snapshot`` — start-up and snapshots;
- ``shard_search`` — what a search of one field asks (``FieldSearch``), and the exact /
  approximate search and re-ranking that answer it;
- ``build_schedule`` — when approximate indexes are (re)built, and the build itself;
- ``shard_stats`` — what the shard reports about itself.

Writes are serialised by ``_writer`` (WAL append, then apply); searches share ``_rw`` and only
wait while a write is applied.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever import (
    gpu,
    shard_persistence,
    shard_stats,
    similarity_profile,
    snapshot,
)
from facesearch_server.retriever.build_schedule import SCRUB, BuildSchedule
from facesearch_server.retriever.field_index import FieldIndex
from facesearch_server.retriever.filters import Predicate
from facesearch_server.retriever.rwlock import RWLock
from facesearch_server.retriever.search_batcher import SearchBatcher
from facesearch_server.retriever.shard_search import FieldSearch, is_small, search_field
from facesearch_server.retriever.shard_state import ShardState
from facesearch_server.retriever.wal import (
    OP_ADD_VECTORS,
    OP_DELETE,
    OP_UPSERT,
    WriteAheadLog,
    make_dirs,
)
from facesearch_server.runtime.errors import FailedPrecondition


class LocalShard:
    def __init__(
        self,
        directory: Path,
        fields: list[pb.VectorFieldSpec],
        on_build_needed: Callable[[LocalShard, str], None] | None = None,
    ) -> None:
        self.dir = directory
        make_dirs(self.dir)
        self.state = ShardState(fields)
        self.wal = WriteAheadLog(self.dir / "wal")
        self._writer = threading.Lock()
        self._rw = RWLock()
        self._snapshotting = threading.Lock()
        self.closed = threading.Event()
        self.batcher = SearchBatcher(self)  # the event loop's front of search / search_small
        on_needed = (
            None if on_build_needed is None else (lambda name: on_build_needed(self, name))  # type: ignore[misc]
        )
        self.builds = BuildSchedule(
            self.state.fields, self._rw, self.closed, on_needed, str(self.dir)
        )
        recovered = shard_persistence.recover(self.state, self.dir, self.wal)
        self.last_snapshot = recovered.created
        if recovered.deleted or any(fi.purge for fi in self.state.fields.values()):
            # The files still hold deleted vectors' data: scrubbed once the purge has run.
            self.builds.note_delete()

    # ---- writes ------------------------------------------------------------------------

    def upsert(self, points: list[pb.Point], durable: bool = True) -> tuple[int, int]:
        gpu.pin_threads()
        payload = pb.UpsertRequest(points=points).SerializeToString()
        with self._writer:
            self.wal.append(OP_UPSERT, payload, durable)
            with self._rw.write():
                result = self.state.apply_upsert(points)
        self.builds.note_write()
        self.builds.request_due()
        return result

    def add_vectors(self, points: list[pb.Point], durable: bool = True) -> tuple[int, int]:
        """Back-fill (UpsertMode ADD_VECTORS): add the vectors of fields the stored points of
        these ids lack; (points changed, points skipped). Only what changes is logged, so
        replay applies exactly it; an id not stored is never created."""
        gpu.pin_threads()
        with self._writer:
            with self._rw.read():
                effective = self.state.additions(points)
            if effective:
                payload = pb.UpsertRequest(points=effective).SerializeToString()
                self.wal.append(OP_ADD_VECTORS, payload, durable)
                with self._rw.write():
                    self.state.apply_add_vectors(effective)
        if effective:
            self.builds.note_write()
            self.builds.request_due()
        return len(effective), len(points) - len(effective)

    def add_field(
        self,
        spec: pb.VectorFieldSpec,
        persist: Callable[[list[pb.VectorFieldSpec]], None] | None = None,
    ) -> bool:
        """Add an empty vector field (AddVectorField); False when the shard has it already
        with this very spec. A field of that name with another spec is replaced while it holds
        no vector (an attempt its router never committed, so nothing was written to it), else
        FailedPrecondition. ``persist`` saves the shard's new field list before it takes effect
        (a shard server's fields.pb); an embedded shard's list is its collection's, saved by
        the catalog."""
        with self._writer, self._rw.write():
            have = self.state.fields.get(spec.name)
            if have is not None and have.spec == spec:
                return False
            if have is not None and have.flat.ntotal:
                raise FailedPrecondition(
                    f"this shard holds {have.flat.ntotal:,} vectors of field {spec.name!r} "
                    "under another spec; drop the collection to change a field"
                )
            specs = [spec if n == spec.name else fi.spec for n, fi in self.state.fields.items()]
            if have is None:
                specs.append(spec)
            if persist is not None:
                persist(specs)
            self.state.add_field(spec)
            self.builds.fields = self.state.fields
        return True

    def delete_ids(self, ids: list[str]) -> int:
        with self._writer:
            present = [i for i in dict.fromkeys(ids) if i in self.state.store.ids]
            n = self._delete_logged(present)
        self.builds.request_due()
        return n

    def delete_matching(self, pred: Predicate) -> int:
        with self._writer:
            with self._rw.read():
                present = [r.id for _lab, r in self.state.store.candidates(pred) if pred(r.meta)]
            n = self._delete_logged(present)
        self.builds.request_due()
        return n

    def _delete_logged(self, ids: list[str]) -> int:
        """Caller holds ``_writer``. Deletes are always fsynced: "forget" must stick.

        Every delete (by id, filter or person) is hard: the deleted vectors are filtered from
        results at once, leave the built approximate indexes by a purge rebuild queued at once,
        and leave the files by the scrub snapshot that follows it (``build_schedule``).
        """
        if not ids:
            return 0
        self.wal.append(OP_DELETE, pb.IdList(ids=ids).SerializeToString(), durable=True)
        labels = self.state.store.labels_of(ids)
        with self._rw.write():
            self.state.apply_delete(labels)
            self.state.mark_purge(labels)
        self.builds.note_delete()
        return len(ids)

    def sync(self) -> None:
        with self._writer:
            self.wal.sync()

    # ---- reads -------------------------------------------------------------------------

    def count(self) -> int:
        return len(self.state.store)

    def get(self, ids: list[str], with_vectors: bool) -> list[pb.Point]:
        store = self.state.store
        with self._rw.read():
            found = [(lab, store.point(store.records[lab], True)) for lab in store.labels_of(ids)]
            if with_vectors:
                self.state.fill_vectors(found)
        return [p for _, p in found]

    def get_matching(self, pred: Predicate, field: str, limit: int) -> list[pb.Point]:
        """Records matching ``pred`` that have ``field``, with vectors (person queries)."""
        store = self.state.store
        with self._rw.read():
            found = [
                (lab, store.point(r, True))
                for lab, r in store.candidates(pred)
                if (not field or field in r.fields) and pred(r.meta)
            ][:limit]
            self.state.fill_vectors(found)
        return [p for _, p in found]

    def scan(self, after: int, limit: int, with_vectors: bool) -> tuple[list[pb.Point], int, bool]:
        """Up to ``limit`` records written after position ``after`` (a label), in the order
        they were last written, with metadata; (points, position of the last, more follow)."""
        store = self.state.store
        with self._rw.read():
            found, more = store.after(after, limit)
            pts = [(lab, store.point(rec, True)) for lab, rec in found]
            if with_vectors:
                self.state.fill_vectors(pts)
        return [p for _, p in pts], (found[-1][0] if found else after), more

    def search_small(self, search: FieldSearch) -> list[list[tuple[float, pb.Point]]] | None:
        """search() on the calling thread (the event loop) when it is small (is_small) and no
        write holds the lock; None otherwise, for the caller to run search() on a worker."""
        fi = self.state.fields[search.field]
        if not is_small(fi, len(search.queries), search.pred, search.params):
            return None
        with self._rw.try_read() as taken:
            if not taken:
                return None
            gpu.pin_threads()
            return self._search_locked(fi, search)

    def search(self, search: FieldSearch) -> list[list[tuple[float, pb.Point]]]:
        gpu.pin_threads()
        fi = self.state.fields[search.field]
        with self._rw.read():
            return self._search_locked(fi, search)

    def _search_locked(
        self, fi: FieldIndex, search: FieldSearch
    ) -> list[list[tuple[float, pb.Point]]]:
        store = self.state.store
        hits = search_field(
            store, fi, search.queries, search.k, search.pred, search.exclude, search.params
        )
        if not search.with_meta and not search.with_vectors:
            # The hot path of plain searches: ids and scores only.
            return [[(s, pb.Point(id=i)) for s, i, _l in row] for row in hits]
        out: list[list[tuple[float, pb.Point]]] = []
        for row in hits:
            pts = [(lab, store.point(store.records[lab], search.with_meta)) for _s, _i, lab in row]
            if search.with_vectors:
                self.state.fill_vectors(pts)
            out.append([(s, p) for (s, _i, _l), (_lab, p) in zip(row, pts, strict=True)])
        return out

    # ---- approximate indexes -------------------------------------------------------------

    def resume_builds(self) -> None:
        """Queue the builds that are due, e.g. after opening: the snapshot's index serves at
        once; a purge it still owes, a delta replayed from the log, or an index the snapshot
        lacks is built in the background."""
        self.builds.request_due()

    def build_now(self, name: str) -> None:
        """Run a job ``on_build_needed`` was given, on the build thread: build, rebuild or
        extend the approximate index of field ``name``, or the scrub snapshot (``SCRUB``)."""
        if name != SCRUB:
            self.builds.build(name)
            return
        try:
            self.snapshot(force=True)
        finally:
            self.builds.scrub_ran()
        self.builds.request_due()  # a delete after the capture needs another one

    # ---- snapshots and stats -------------------------------------------------------------

    def snapshot(self, force: bool = False) -> int:
        """Write a snapshot and drop the log it covers; returns the sequence covered.
        ``force``: even when the log has not grown (a purge rebuild changed the index)."""
        with self._snapshotting:
            with self._writer, self._rw.read():
                seq = self.wal.last_seq
                if self.closed.is_set():
                    # Closed or being dropped: writing now would recreate a deleted directory.
                    return seq
                if self.wal.entries == 0 and self.last_snapshot and not force:
                    return seq
                self.wal.rotate()
                copy = shard_persistence.capture(self.state)
                generation = self.builds.delete_generation
                clean = not any(fi.purge for fi in self.state.fields.values())
            created = time.time()
            snapshot.write(self.dir, copy.state(seq, created))
            with self._writer:
                self.wal.drop_through(seq)
            self.last_snapshot = created
            # Clean: older snapshots and the log are gone, and this one holds no deleted vector.
            self.builds.snapshot_written(generation, clean)
            return seq

    def field_stats(self) -> list[pb.VectorFieldStats]:
        return shard_stats.field_stats(self.state.fields, self.count())

    def _stale_profiles(self) -> list[FieldIndex]:
        return [
            fi
            for fi in self.state.fields.values()
            if (
                fi.profile.stale(fi.flat.ntotal)
                if fi.profile is not None
                else fi.flat.ntotal >= similarity_profile.MIN_VECTORS  # too few: none to make
            )
        ]

    def profiles_stale(self) -> bool:
        """Whether refresh_profiles has work to do (cheap: callers on the event loop skip the
        thread hop when it has none, as most reports do)."""
        return bool(self._stale_profiles())

    def refresh_profiles(self) -> None:
        """Recompute the similarity profiles that are stale (similarity_profile.py); blocking
        (it reads vectors under the read lock): run it off the event loop."""
        stale = self._stale_profiles()
        if not stale:
            return
        with self._rw.read():
            for fi in stale:
                fi.profile = similarity_profile.compute(
                    fi.labels(), fi.flat.reconstruct_batch, fi.spec.metric
                )

    def memory_bytes(self) -> int:
        return shard_stats.memory_bytes(self.field_stats(), self.count())

    def disk_bytes(self) -> int:
        return snapshot.disk_bytes(self.dir)

    def close(self) -> None:
        self.closed.set()
        self.builds.stop()
        with self._writer:
            self.wal.close()

    def destroy(self) -> None:
        self.close()
        with self._snapshotting:  # a snapshot already writing finishes before the files go
            shutil.rmtree(self.dir, ignore_errors=True)
