"""A shard's records: label -> record, id -> label, and value -> labels indexes of the fields
looked up by value ("every face of person X", "of media Y").

Every record gets a fresh int64 label on each upsert; labels are never reused, so a label in an
immutable approximate index that no longer names a live record is a tombstone, and a deleted
record cannot come back through a stale index entry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever import records
from facesearch_server.retriever.filters import Predicate

# String fields with a value -> labels index, so "every face of person X" or "of media Y"
# (deletes, person terms, filters) does not scan every record.
INDEXED_FIELDS = ("person_id", "media_id")


@dataclass
class Record:
    id: str
    meta: records.Metadata
    fields: tuple[str, ...]


class RecordStore:
    def __init__(self) -> None:
        self.records: dict[int, Record] = {}
        self.ids: dict[str, int] = {}
        self.postings: dict[str, dict[str, set[int]]] = {f: {} for f in INDEXED_FIELDS}
        self.next_label = 1
        # Bumped by every add and remove; the sorted labels a scan pages through are cached
        # for one version, so paging a collection nobody writes costs a bisection per page.
        self.version = 0
        self._scan_labels: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.records)

    def new_labels(self, n: int) -> list[int]:
        labels = list(range(self.next_label, self.next_label + n))
        self.next_label += n
        return labels

    def add(self, label: int, rec: Record) -> None:
        self.version += 1
        self.records[label] = rec
        self.ids[rec.id] = label
        self._post(label, rec.meta)

    def remove(self, label: int) -> Record | None:
        rec = self.records.pop(label, None)
        if rec is None:
            return None
        self.version += 1
        if self.ids.get(rec.id) == label:
            del self.ids[rec.id]
        self._unpost(label, rec.meta)
        return rec

    def labels_of(self, ids: Iterable[str]) -> list[int]:
        """Labels of the ids that are live; unknown ids are left out."""
        return [self.ids[i] for i in ids if i in self.ids]

    def candidates(self, pred: Predicate) -> Iterable[tuple[int, Record]]:
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

    def after(self, position: int, limit: int) -> tuple[list[tuple[int, Record]], bool]:
        """Up to ``limit`` live records whose label is above ``position``, by label (the order
        they were last written: labels only grow, and survive restarts), and whether more
        follow. Callers hold the shard's read lock."""
        cached = self._scan_labels
        if cached is None or cached[0] != self.version:
            labels = np.sort(np.fromiter(self.records, dtype=np.int64, count=len(self.records)))
            cached = self._scan_labels = (self.version, labels)
        labels = cached[1]
        start = int(np.searchsorted(labels, position, side="right"))
        chosen = labels[start : start + limit].tolist()
        return [(lab, self.records[lab]) for lab in chosen], start + limit < len(labels)

    @staticmethod
    def point(rec: Record, with_meta: bool) -> pb.Point:
        p = pb.Point(id=rec.id)
        if with_meta:
            records.metadata_to_proto(rec.meta, p.metadata)
        return p

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
