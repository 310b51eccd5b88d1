"""When a shard's approximate indexes are due for a (re)build, and the build itself: a copy of
the exact vectors taken under the read lock, trained off the request path, swapped in under the
write lock. The builds run on whatever thread ``on_needed`` hands them to (the process's build
queue); without ``on_needed`` nothing is ever built automatically.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import faiss

from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever import gpu, index_build
from facesearch_server.retriever.field_index import FieldIndex
from facesearch_server.retriever.rwlock import RWLock

log = logging.getLogger("facesearch.retriever.shard")


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
        # Guards the ``building`` flags: writers ask for builds after leaving the shard's
        # writer lock, so two of them could otherwise both see "not building" and queue the
        # same build twice.
        self._flags = threading.Lock()

    def _due(self, fi: FieldIndex) -> bool:
        if fi.kind == pb.INDEX_KIND_FLAT or fi.building or self.closed.is_set():
            return False
        if fi.ann is None:
            return fi.flat.ntotal >= fi.spec.index.train_threshold
        churn = len(fi.tombstones) + len(fi.delta)
        return bool(fi.purge) or churn > max(16, index_build.REBUILD_FRACTION * len(fi.ann.covered))

    def request_due(self) -> None:
        """Hand every field whose index is due (and not already building) to ``on_needed``."""
        if self.on_needed is None:
            return
        due_fields = []
        with self._flags:
            for name, fi in self.fields.items():
                if self._due(fi):
                    fi.building = True
                    fi.progress = 0.0
                    due_fields.append(name)
        for name in due_fields:
            self.on_needed(name)

    def build(self, name: str) -> None:
        """Build (or rebuild) the approximate index of ``name``; runs on the build thread."""
        gpu.pin_threads()
        fi = self.fields[name]
        try:
            with self.rw.read():
                labels = fi.labels().copy()
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
            with self.rw.write():
                fi.ann = ann
                fi.reconcile()
                # Forgotten while this build ran (so still inside it): another rebuild follows.
                fi.purge = {lab for lab in fi.purge if ann.covers(lab)}
            log.info(
                "index built",
                extra={
                    "shard": self.where,
                    "field": name,
                    "n": len(labels),
                    "seconds": round(ann.build_seconds, 2),
                },
            )
        finally:
            with self._flags:
                fi.building = False
                fi.progress = 1.0 if fi.ann is not None else 0.0
        if fi.purge:
            self.request_due()
