"""Unlabelled faces grouped into candidate persons, kept up to date as faces arrive.

Average-linkage agglomerative clustering (scikit-learn) cut at the face model's 1:1 threshold:
on LFW it kept 99 % of clusters to one person at 98.5 % pairwise recall, where single-linkage
methods (connected components, HDBSCAN) chained people together through a few look-alike pairs
(bench/identify/bench_clustering.py).

Incremental: a face that arrives later joins the existing cluster whose *average* cosine
with it is highest, if that average reaches the cut plus a margin (average linkage's own
merge criterion, with the new face as a cluster of one, made stricter because a join is
final). The mean cosine with a cluster is the face's dot product with the cluster's sum of
unit vectors over its size, so one matrix product prices every cluster. The faces that join
none are clustered among themselves as above. Existing clusters never merge with each other
on the way, so clusters built in many small steps are less pure than one full run
(bench_clustering measures it) and ListClusters(recluster=true) redoes the whole grouping.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import AgglomerativeClustering

# 1:1 false-match rate of the cut: strict, as for folder labels (many pairs are compared).
CLUSTER_FMR = 1e-4
# Faces clustered in one agglomerative run: its distance matrix is n^2 float64 (0.8 GB at
# 10,000). More new faces than this are taken in chunks, each joining what came before.
MAX_AGGLOMERATIVE = 10_000
# A face that joins a kept cluster is never judged again (a full run would have merged its
# true partner with it first, had the partner been there), so a join needs this much more
# than the cut. On LFW arriving in 10-50 batches: mixed clusters 113-126 -> 44-60 of ~1,640,
# BCubed F 0.965-0.970 -> 0.975-0.979 (bench_clustering; 0.05 and up lost more recall).
JOIN_MARGIN = 0.03
# New faces priced against every cluster at once (a chunk x clusters float32 matrix).
_ASSIGN_CHUNK = 512


@dataclass(frozen=True)
class Cluster:
    cluster_id: str
    face_ids: list[str]


def new_cluster_id() -> str:
    # Random rather than a hash of the members: an id stays the same while faces join it.
    return f"c-{uuid.uuid4().hex[:16]}"


def _unit(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def agglomerate(unit: np.ndarray, threshold: float) -> list[list[int]]:
    """Rows grouped by average linkage cut at cosine ``threshold`` (every row in one group)."""
    if len(unit) == 0:
        return []
    if len(unit) == 1:
        return [[0]]
    distance = np.clip(1.0 - unit @ unit.T, 0.0, 2.0)
    labels = AgglomerativeClustering(
        n_clusters=None,
        metric="precomputed",
        linkage="average",
        distance_threshold=1.0 - threshold,
    ).fit_predict(distance)
    groups: dict[int, list[int]] = {}
    for row, label in enumerate(labels):
        groups.setdefault(int(label), []).append(row)
    return list(groups.values())


def extend(
    assignment: dict[str, str],
    ids: list[str],
    vectors: np.ndarray,
    threshold: float,
    join_margin: float = JOIN_MARGIN,
) -> dict[str, str]:
    """Face id -> cluster id for every face in ``ids``: faces already in ``assignment`` keep
    their cluster; the others join one (mean cosine >= ``threshold``) or form new ones.
    Singletons are clusters too, so a later look-alike can join them."""
    unit = _unit(vectors) if len(ids) else np.zeros((0, 0), np.float32)
    out = {fid: assignment[fid] for fid in ids if fid in assignment}
    # Per cluster: sum of its members' unit vectors and their count.
    order: list[str] = []
    sums: dict[str, np.ndarray] = {}
    sizes: dict[str, int] = {}
    new_rows = []
    for row, fid in enumerate(ids):
        cid = out.get(fid)
        if cid is None:
            new_rows.append(row)
            continue
        if cid not in sums:
            order.append(cid)
            sums[cid] = np.zeros(unit.shape[1], np.float64)
            sizes[cid] = 0
        sums[cid] += unit[row]
        sizes[cid] += 1
    for start in range(0, len(new_rows), MAX_AGGLOMERATIVE):
        chunk = new_rows[start : start + MAX_AGGLOMERATIVE]
        left = []
        if order:
            centre = np.stack([sums[c] for c in order]).astype(np.float32)
            size = np.array([sizes[c] for c in order], np.float32)
            for a in range(0, len(chunk), _ASSIGN_CHUNK):
                rows = chunk[a : a + _ASSIGN_CHUNK]
                mean = (unit[rows] @ centre.T) / size
                best = mean.argmax(axis=1)
                for i, (row, b) in enumerate(zip(rows, best, strict=True)):
                    if mean[i, b] >= threshold + join_margin:
                        out[ids[row]] = order[b]
                    else:
                        left.append(row)
            # Joined faces update their clusters only after the chunk: the faces of one chunk
            # are judged against the same clusters, whatever their order.
            for row in chunk:
                cid = out.get(ids[row])
                if cid is not None:
                    sums[cid] += unit[row]
                    sizes[cid] += 1
        else:
            left = list(chunk)
        for group in agglomerate(unit[left], threshold):
            cid = new_cluster_id()
            order.append(cid)
            sums[cid] = unit[[left[g] for g in group]].sum(axis=0).astype(np.float64)
            sizes[cid] = len(group)
            for g in group:
                out[ids[left[g]]] = cid
    return out


def listing(assignment: dict[str, str], quality: dict[str, float], min_size: int) -> list[Cluster]:
    """Clusters of at least ``min_size`` faces, largest first; faces best quality first."""
    members: dict[str, list[str]] = {}
    for fid, cid in assignment.items():
        members.setdefault(cid, []).append(fid)
    out = [
        Cluster(cid, sorted(faces, key=lambda f: (-quality.get(f, 0.0), f)))
        for cid, faces in members.items()
        if len(faces) >= min_size
    ]
    out.sort(key=lambda c: (-len(c.face_ids), c.cluster_id))
    return out


def cluster_faces(
    ids: list[str],
    vectors: np.ndarray,
    quality: np.ndarray,
    threshold: float,
    min_size: int,
) -> list[Cluster]:
    """One full run over ``ids`` (no earlier clusters): what ``bench_clustering`` measures."""
    assignment = extend({}, ids, vectors, threshold)
    return listing(assignment, dict(zip(ids, map(float, quality), strict=True)), min_size)


def members(assignment: dict[str, str], cluster_ids: Iterable[str]) -> dict[str, list[str]]:
    wanted = set(cluster_ids)
    out: dict[str, list[str]] = {c: [] for c in wanted}
    for fid, cid in assignment.items():
        if cid in wanted:
            out[cid].append(fid)
    return out
