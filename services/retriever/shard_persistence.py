"""A shard's state to and from disk: start-up (the newest snapshot, then the write-ahead log
after it replayed) and the copy of the state a snapshot writes.

The log holds whole requests (``UpsertRequest``, ``IdList`` of deleted ids, ``UpsertRequest`` of
vectors added to stored points), so replay applies them exactly as the first time; labels are
re-issued in the same order, hence the same labels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever import index_build, records, snapshot
from facesearch_server.retriever.record_store import Record
from facesearch_server.retriever.shard_state import ShardState
from facesearch_server.retriever.wal import OP_ADD_VECTORS, OP_DELETE, OP_UPSERT, WriteAheadLog

log = logging.getLogger("facesearch.retriever.shard")


@dataclass
class Recovered:
    created: float  # when the snapshot loaded was written (0 when there is none)
    deleted: bool  # the log replayed deletes: the files still hold those vectors' data


def recover(state: ShardState, directory: Path, wal: WriteAheadLog) -> Recovered:
    """Load the newest snapshot into ``state`` (its built indexes serve at once, with the
    tombstones and purge they owe) and replay the log after it."""
    seq = 0
    created = 0.0
    path = snapshot.latest(directory)
    if path is not None:
        saved = snapshot.load(path)
        seq = saved.seq
        created = saved.created
        _load(state, saved)
    replayed = 0
    deleted = False
    for _seq, op, payload in wal.replay(seq):
        if op == OP_UPSERT:
            req = pb.UpsertRequest()
            req.ParseFromString(payload)
            state.apply_upsert(list(req.points))
        elif op == OP_ADD_VECTORS:
            req = pb.UpsertRequest()
            req.ParseFromString(payload)
            state.apply_add_vectors(list(req.points))
        elif op == OP_DELETE:
            ids = pb.IdList()
            ids.ParseFromString(payload)
            labels = state.store.labels_of(ids.ids)
            state.apply_delete(labels)
            # Every delete is hard: what the snapshot's built index holds is purged.
            state.mark_purge(labels)
            deleted = deleted or bool(labels)
        replayed += 1
    for fi in state.fields.values():
        if fi.ann is not None:
            fi.reconcile()
    if replayed:
        log.info("wal replayed", extra={"shard": str(directory), "entries": replayed})
    return Recovered(created, deleted)


def _load(state: ShardState, saved: snapshot.SnapshotState) -> None:
    store = state.store
    store.next_label = saved.next_label
    for name, blob in saved.flat.items():
        if name in state.fields:
            state.fields[name].flat = snapshot.deserialize(blob)
    present: dict[int, list[str]] = {}
    for name, fi in state.fields.items():
        for label in fi.labels().tolist():
            present.setdefault(label, []).append(name)
    for label, p in zip(saved.labels.tolist(), saved.points.points, strict=True):
        meta = records.metadata_from_proto(p.metadata)
        store.add(label, Record(p.id, meta, tuple(present.get(label, ()))))
    for name, ann in saved.ann.items():
        fi = state.fields[name]
        loaded = index_build.AnnIndex(
            snapshot.deserialize(ann.blob),
            ann.covered,
            fi.kind,
            ann.nlist,
            int(ann.blob.nbytes),
            ann.build_seconds,
            ann.tuning,
            built_n=ann.built_n,
        )
        fi.ann = loaded
        # Deleted before the snapshot: tombstones again after the replay's reconcile, and
        # still owed their purge.
        fi.purge = {lab for lab in ann.purge.tolist() if loaded.covers(lab)}


@dataclass
class Capture:
    """What a snapshot needs, copied under the shard's locks; turned into a
    ``snapshot.SnapshotState`` (the slow part) after they are released."""

    next_label: int
    labels: np.ndarray
    recs: list[Record]
    flat: dict[str, np.ndarray]
    ann: dict[str, snapshot.SavedAnn]

    def state(self, seq: int, created: float) -> snapshot.SnapshotState:
        points = pb.GetResponse()
        for r in self.recs:
            p = points.points.add(id=r.id)
            records.metadata_to_proto(r.meta, p.metadata)
        return snapshot.SnapshotState(
            seq, self.next_label, self.labels, points, self.flat, self.ann, created
        )


def capture(state: ShardState) -> Capture:
    """Copy ``state``; the caller holds the shard's writer lock and read lock. Built indexes
    are kept even while they hold deleted vectors (a restart must not rebuild them to serve at
    full speed), with the labels still to purge: until the purge rebuild runs, the deleted
    vectors are tombstones after a restart too, and the purge is queued again."""
    recs = state.store.records
    return Capture(
        next_label=state.store.next_label,
        labels=np.fromiter(recs.keys(), dtype=np.int64, count=len(recs)),
        recs=list(recs.values()),
        flat={n: faiss.serialize_index(fi.flat) for n, fi in state.fields.items()},
        ann={
            n: snapshot.SavedAnn(
                faiss.serialize_index(fi.ann.index),
                fi.ann.covered,
                fi.ann.nlist,
                fi.ann.build_seconds,
                fi.ann.tuning,
                np.fromiter(sorted(fi.purge), dtype=np.int64, count=len(fi.purge)),
                fi.ann.built_n,
            )
            for n, fi in state.fields.items()
            if fi.ann is not None
        },
    )
