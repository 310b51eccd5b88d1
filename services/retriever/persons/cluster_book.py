"""A collection's candidate persons: the kept clusters brought up to date with the faces that
are unlabelled now, and a user's merges and splits of them. Runs on worker threads, under the
collection's persons lock (one change at a time)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facesearch_server.retriever.persons import face_clusters
from facesearch_server.retriever.persons.cluster_store import ClusterStore
from facesearch_server.runtime.errors import InvalidArgument, NotFound
from facesearch_server.runtime.validation import quote


@dataclass(frozen=True)
class Refresh:
    assignment: dict[str, str]
    new_faces: int
    departed_faces: int


def refresh(
    store: ClusterStore,
    ids: list[str],
    vectors: np.ndarray,
    threshold: float,
    recluster: bool,
) -> Refresh:
    """Every face in ``ids`` (the unlabelled faces now) in a cluster, the kept ones where they
    were; faces no longer unlabelled leave their clusters."""
    kept = {} if recluster else store.assignment()
    now = set(ids)
    departed = [f for f in kept if f not in now]
    assignment = face_clusters.extend(kept, ids, vectors, threshold)
    changed = {f: c for f, c in assignment.items() if kept.get(f) != c}
    store.apply(changed, departed, replace_all=recluster)
    return Refresh(assignment, sum(1 for f in ids if f not in kept), len(departed))


def _current(store: ClusterStore, cluster_ids: list[str]) -> dict[str, list[str]]:
    found = face_clusters.members(store.assignment(), cluster_ids)
    for cid in cluster_ids:
        if not found[cid]:
            raise NotFound(
                f"no cluster {quote(cid)}: list clusters again (its faces may have been "
                "labelled or deleted, and a recluster issues new ids)"
            )
    return found


def merge(store: ClusterStore, cluster_ids: list[str]) -> list[str]:
    """The faces of every listed cluster under the first one's id; returns its faces."""
    if len(cluster_ids) < 2:
        raise InvalidArgument("cluster_ids", "needs at least two clusters to merge")
    if len(set(cluster_ids)) != len(cluster_ids):
        raise InvalidArgument("cluster_ids", "names a cluster twice: a cluster cannot merge itself")
    found = _current(store, cluster_ids)
    target = cluster_ids[0]
    moved = {f: target for cid in cluster_ids[1:] for f in found[cid]}
    store.apply(moved, [])
    return found[target] + list(moved)


def split(store: ClusterStore, cluster_id: str, face_ids: list[str]) -> tuple[list[str], str]:
    """Move ``face_ids`` out of ``cluster_id`` into a new cluster: (faces kept, new id)."""
    if not face_ids:
        raise InvalidArgument("face_ids", "is empty: name the faces to move out")
    faces = _current(store, [cluster_id])[cluster_id]
    inside = set(faces)
    for i, f in enumerate(face_ids):
        if f not in inside:
            raise InvalidArgument(f"face_ids[{i}]", f"{quote(f)} is not in cluster {cluster_id}")
    moving = set(face_ids)
    if moving >= inside:
        raise InvalidArgument("face_ids", "names every face of the cluster: leave at least one")
    new_id = face_clusters.new_cluster_id()
    store.apply({f: new_id for f in moving}, [])
    return [f for f in faces if f not in moving], new_id
