"""The in-memory state of one shard that its write-ahead log is applied to: per vector field a
``FieldIndex`` and the ``RecordStore``. Not thread-safe; ``LocalShard`` holds the locks."""

from __future__ import annotations

import numpy as np

from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever import records
from facesearch_server.retriever.field_index import FieldIndex, batch_selector
from facesearch_server.retriever.record_store import Record, RecordStore


class ShardState:
    def __init__(self, fields: list[pb.VectorFieldSpec]) -> None:
        self.fields: dict[str, FieldIndex] = {spec.name: FieldIndex(spec) for spec in fields}
        self.primary = fields[0].name
        self.store = RecordStore()

    def _vectors(self, points: list[pb.Point], name: str) -> tuple[list[int], np.ndarray]:
        rows = [i for i, p in enumerate(points) if name in p.vectors]
        dim = self.fields[name].spec.dimension
        mat = np.empty((len(rows), dim), dtype=np.float32)
        for j, i in enumerate(rows):
            mat[j] = points[i].vectors[name].values
        return rows, mat

    def apply_upsert(self, points: list[pb.Point]) -> tuple[int, int]:
        """Store ``points`` under fresh labels, replacing any records of the same ids;
        (upserted, replaced)."""
        old = self.store.labels_of(p.id for p in points)
        if old:
            self.apply_delete(old)
        labels = self.store.new_labels(len(points))
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
            held = tuple(n for n in self.fields if n in p.vectors)
            self.store.add(label, Record(p.id, meta, held))
        return len(points), len(old)

    def additions(self, points: list[pb.Point]) -> list[pb.Point]:
        """What ADD_VECTORS would change: each point of a stored id, trimmed to the vectors of
        fields its record lacks; points that would change nothing are left out."""
        out = []
        for p in points:
            label = self.store.ids.get(p.id)
            if label is None:
                continue
            held = self.store.records[label].fields
            new = [n for n in p.vectors if n in self.fields and n not in held]
            if not new:
                continue
            trimmed = pb.Point(id=p.id)
            for n in new:
                trimmed.vectors[n].CopyFrom(p.vectors[n])
                trimmed.model_ids[n] = p.model_ids[n]
            out.append(trimmed)
        return out

    def apply_add_vectors(self, points: list[pb.Point]) -> int:
        """Add each point's vectors to the stored record of its id, under the record's label,
        for fields it lacks (``additions``); the record keeps everything else, its label
        included, so built indexes of its other fields stay valid. Returns the records
        changed."""
        points = self.additions(points)
        labels = [self.store.ids[p.id] for p in points]
        for name, fi in self.fields.items():
            rows, mat = self._vectors(points, name)
            if not rows:
                continue
            lab = np.array([labels[i] for i in rows], dtype=np.int64)
            fi.flat.add_with_ids(mat, lab)
            if fi.ann is not None:
                # Never in this field's built index (labels are not reused): the delta.
                fi.delta.update(lab.tolist())
        for label, p in zip(labels, points, strict=True):
            rec = self.store.records[label]
            rec.fields = (*rec.fields, *(n for n in self.fields if n in p.vectors))
        return len(points)

    def add_field(self, spec: pb.VectorFieldSpec) -> None:
        """Install an empty vector field ``spec`` (AddVectorField), in place of an empty one
        of the same name if there is one (``LocalShard.add_field`` decides when that may be)."""
        # A new dict, not an insert: the build thread may be iterating over the old one.
        fields = dict(self.fields)
        fields[spec.name] = FieldIndex(spec)
        self.fields = fields

    def apply_delete(self, labels: list[int]) -> int:
        by_field: dict[str, list[int]] = {}
        for label in labels:
            rec = self.store.remove(label)
            if rec is None:
                continue
            for name in rec.fields:
                by_field.setdefault(name, []).append(label)
        for name, labs in by_field.items():
            fi = self.fields[name]
            fi.flat.remove_ids(batch_selector(np.array(labs, dtype=np.int64)))
            if fi.ann is not None:
                for label in labs:
                    if label in fi.delta:
                        fi.delta.discard(label)
                    elif fi.ann.covers(label):
                        fi.tombstones.add(label)
        return sum(1 for _ in labels)

    def mark_purge(self, labels: list[int]) -> None:
        for fi in self.fields.values():
            fi.mark_purge(labels)

    def fill_vectors(self, pts: list[tuple[int, pb.Point]]) -> None:
        """Add the stored vectors (and their model ids) to each (label, point)."""
        recs = self.store.records
        for name, fi in self.fields.items():
            having = [(lab, p) for lab, p in pts if name in recs[lab].fields]
            if not having:
                continue
            mat = fi.flat.reconstruct_batch(np.array([lab for lab, _ in having], dtype=np.int64))
            for (_lab, p), row in zip(having, mat, strict=True):
                p.vectors[name].values.extend(row.tolist())
                p.model_ids[name] = fi.spec.model_id
