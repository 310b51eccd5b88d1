"""When a shard's approximate indexes are due for a (re)build, and the build itself: a copy of
the exact vectors taken under the read lock, trained off the request path, swapped in under the
write lock. The builds run on whatever thread ``on_needed`` hands them to (the process's build
queue); without ``on_needed`` nothing is ever built automatically.

Due, per field (checked after every write, after every build, and by a settle timer):

- a full build: no index yet and ``train_threshold`` vectors stored; deleted vectors to purge;
  or tombstones + delta + growth by extensions past ``REBUILD_FRACTION`` of the last full build;
- an extension (the delta added to a copy of the index): a delta of ``EXTEND_MIN`` /
  ``EXTEND_FRACTION``, or any delta once writes have paused for ``SETTLE_S``.

Builds re-check when they finish, because writes that arrive while one runs (a bulk load) are
not in it: without that, a load that started the first build at the threshold ended with 95%
of its vectors in the exact delta until the next write or restart.

Hard deletes also make the shard's files due for a "scrub" snapshot (``SCRUB``, queued like a
build): once no built index holds a deleted vector any more, a fresh snapshot replaces the
older one and the log that still hold its data.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import faiss
import numpy as np

from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever import gpu, index_build
from facesearch_server.retriever.field_index import FieldIndex
from facesearch_server.retriever.rwlock import RWLock

log = logging.getLogger("facesearch.retriever.shard")

# Writes pause this long before a delta below EXTEND_MIN is folded in (the tail of a bulk load).
SETTLE_S = 2.0
# The job ``on_needed`` is given for a scrub snapshot; no field name can be this.
SCRUB = "*scrub-snapshot*"


class BuildSchedule:
    def __init__(
        self,
        fields: dict[str, FieldIndex],
        rw: RWLock,
        closed: threading.Event,
        on_needed: Callable[[str], None] | None,
        where: str,
    ) -> None:
        self.fields = fields
        self.rw = rw
        self.closed = closed
        self.on_needed = on_needed
        self.where = where  # for logs: the shard's directory
        # Guards the ``building`` flags, the scrub flags and the timer: writers ask for builds
        # after leaving the shard's writer lock, so two of them could otherwise both see "not
        # building" and queue the same build twice.
        self._flags = threading.Lock()
        self.settle_s = SETTLE_S
        self._last_write = 0.0
        self._timer: threading.Timer | None = None
        # The shard's files (log, newest snapshot) may hold a deleted vector's data.
        self.scrub_due = False
        self._scrub_queued = False
        # Bumped by every delete: a snapshot captured before a delete does not scrub it.
        self.delete_generation = 0

    # ---- what is due -------------------------------------------------------------------------

    def _stale(self, fi: FieldIndex) -> bool:
        """A full rebuild is due (the index exists)."""
        assert fi.ann is not None
        churn = len(fi.tombstones) + len(fi.delta) + fi.ann.grown
        return bool(fi.purge) or churn > max(16, index_build.REBUILD_FRACTION * fi.ann.built_n)

    def _due(self, fi: FieldIndex, quiet: bool) -> bool:
        if fi.kind == pb.INDEX_KIND_FLAT or fi.building or self.closed.is_set():
            return False
        if fi.ann is None:
            return fi.flat.ntotal >= fi.spec.index.train_threshold
        if self._stale(fi):
            return True
        big = max(index_build.EXTEND_MIN, index_build.EXTEND_FRACTION * len(fi.ann.covered))
        return bool(fi.delta) and (quiet or len(fi.delta) >= big)

    def note_write(self) -> None:
        self._last_write = time.monotonic()

    def note_delete(self) -> None:
        """A hard delete was applied: the files hold its data until a scrub snapshot."""
        with self._flags:
            self.scrub_due = True
            self.delete_generation += 1

    def snapshot_written(self, generation: int, clean: bool) -> None:
        """A snapshot captured at delete ``generation`` is on disk; ``clean``: its built
        indexes held no deleted vector (else they do now, until the purge and a scrub)."""
        with self._flags:
            if not clean:
                self.scrub_due = True
            elif generation == self.delete_generation:
                self.scrub_due = False

    def scrub_ran(self) -> None:
        """The queued scrub snapshot ran (or failed): another may be queued when due."""
        with self._flags:
            self._scrub_queued = False

    def request_due(self) -> None:
        """Hand every field whose index is due (and not already building) to ``on_needed``,
        then the scrub snapshot once nothing is left to purge; arm the settle timer while a
        small delta waits for writes to pause."""
        if self.on_needed is None:
            return
        quiet = time.monotonic() - self._last_write >= self.settle_s
        jobs = []
        with self._flags:
            for name, fi in self.fields.items():
                if self._due(fi, quiet):
                    fi.building = True
                    fi.progress = 0.0
                    jobs.append(name)
            busy = any(fi.building or fi.purge for fi in self.fields.values())
            if self.scrub_due and not self._scrub_queued and not busy and not self.closed.is_set():
                self._scrub_queued = True
                jobs.append(SCRUB)
            waiting = any(
                fi.ann is not None and fi.delta and not fi.building for fi in self.fields.values()
            )
            if waiting and self._timer is None and not self.closed.is_set():
                self._timer = threading.Timer(self.settle_s, self._settled)
                self._timer.daemon = True
                self._timer.start()
        for name in jobs:
            self.on_needed(name)

    def _settled(self) -> None:
        with self._flags:
            self._timer = None
        self.request_due()

    def stop(self) -> None:
        with self._flags:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    # ---- the build -----------------------------------------------------------------------

    def build(self, name: str) -> None:
        """Fold the delta of ``name`` into its index by an extension when that is enough, else
        build (or rebuild) it in full; runs on the build thread."""
        gpu.pin_threads()
        fi = self.fields[name]
        swapped = False
        start = time.perf_counter()
        try:
            with self.rw.read():
                old = fi.ann
                extend = old is not None and bool(fi.delta) and not self._stale(fi)
                if extend:
                    labels = np.fromiter(sorted(fi.delta), dtype=np.int64, count=len(fi.delta))
                    vectors = fi.flat.reconstruct_batch(labels)
                else:
                    labels = fi.labels().copy()
                    inner = faiss.downcast_index(fi.flat.index)
                    # An explicit numpy output: once anything in the process imports
                    # faiss.contrib.torch_utils (pytorch-metric-learning does), reconstruct_n
                    # otherwise returns a torch tensor.
                    vectors = np.empty((inner.ntotal, inner.d), np.float32)
                    inner.reconstruct_n(0, inner.ntotal, vectors)

            def progress(x: float) -> None:
                fi.progress = x

            if extend:
                assert old is not None
                ann = index_build.extend(old, labels, vectors, progress, self.closed)
            else:
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
            with self.rw.write():
                fi.ann = ann
                fi.reconcile()
                # Deleted while this build ran (so perhaps inside it): another rebuild follows.
                fi.purge = {lab for lab in fi.purge if ann.covers(lab)}
            swapped = True
            log.info(
                "index extended" if extend else "index built",
                extra={
                    "shard": self.where,
                    "field": name,
                    "n": len(labels),
                    "indexed": len(ann.covered),
                    "seconds": round(time.perf_counter() - start, 2),
                },
            )
        finally:
            with self._flags:
                fi.building = False
                fi.progress = 1.0 if fi.ann is not None else 0.0
        if swapped:
            # What arrived or was deleted while this ran is not in it: the next build, the
            # settle timer or the scrub snapshot follows now, not at the next write.
            self.request_due()
