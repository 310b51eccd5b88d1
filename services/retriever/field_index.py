"""One vector field of a shard: its exact FAISS index (IndexIDMap2 over a flat index), the
optional approximate one, and what the approximate one is behind on (tombstones, delta, purge).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import faiss
import numpy as np

from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever import index_build, similarity, similarity_profile

Hit = tuple[float, str, int]  # (score, id, label)


@dataclass
class FieldIndex:
    spec: pb.VectorFieldSpec
    flat: faiss.Index = None  # type: ignore[assignment]  # set in __post_init__
    ann: index_build.AnnIndex | None = None
    tombstones: set[int] = field(default_factory=set)
    delta: set[int] = field(default_factory=set)
    building: bool = False
    progress: float = 0.0
    # Labels of deleted records (every Delete: by id, filter or person) whose vectors the built
    # index still holds. While any remain a purge rebuild is due at once; snapshots keep the
    # index with this set (so a restart serves at full speed and still purges), and the shard
    # writes a fresh snapshot once the rebuild has dropped them. Records replaced by an upsert
    # are tombstones only: the churn rule folds them in.
    purge: set[int] = field(default_factory=set)
    # Pair-score quantiles of the stored vectors (similarity_profile.py), kept until stale.
    profile: similarity_profile.Profile | None = None

    def __post_init__(self) -> None:
        if self.flat is None:
            self.flat = self.new_flat()

    @property
    def kind(self) -> int:
        return self.spec.index.kind

    @property
    def name(self) -> str:
        return self.spec.name

    def new_flat(self) -> faiss.Index:
        return faiss.IndexIDMap2(
            faiss.IndexFlat(self.spec.dimension, similarity.faiss_metric(self.spec.metric))
        )

    def to_score(self, dist: np.ndarray) -> np.ndarray:
        return -dist if self.spec.metric == pb.METRIC_L2 else dist

    def exact_scores(self, q: np.ndarray, vecs: np.ndarray) -> np.ndarray:
        return similarity.exact_scores(self.spec.metric, q, vecs)

    def labels(self) -> np.ndarray:
        """Labels of the live vectors of this field."""
        return faiss.vector_to_array(self.flat.id_map)

    def reconcile(self) -> None:
        """Tombstones and delta of a built index against the live records of its field."""
        assert self.ann is not None
        alive = self.labels()
        covered = self.ann.covered
        self.tombstones = set(np.setdiff1d(covered, alive, assume_unique=True).tolist())
        self.delta = set(np.setdiff1d(alive, covered, assume_unique=True).tolist())

    def mark_purge(self, labels: list[int]) -> None:
        """Deleted labels the built index still holds must leave it by a rebuild. While a build
        runs, every deleted label may be in its copy: the swap keeps those it holds."""
        if self.building:
            self.purge.update(labels)
        elif self.ann is not None:
            self.purge.update(lab for lab in labels if lab in self.tombstones)

    @property
    def indexed(self) -> int:
        """Live vectors the built index holds (the rest, the delta, are scanned exactly)."""
        return 0 if self.ann is None else len(self.ann.covered) - len(self.tombstones)


def batch_selector(labels: np.ndarray | list[int] | set[int]) -> faiss.IDSelector:
    arr = np.fromiter(labels, dtype=np.int64) if isinstance(labels, set) else labels
    return faiss.IDSelectorBatch(np.ascontiguousarray(arr, dtype=np.int64))
