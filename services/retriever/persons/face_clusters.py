"""Unlabelled faces grouped into candidate persons.

Average-linkage agglomerative clustering (scikit-learn) cut at the face model's 1:1 threshold:
on LFW it kept 99 % of clusters to one person at 98.5 % pairwise recall, where single-linkage
methods (connected components, HDBSCAN) chained people together through a few look-alike pairs
(bench/identify/bench_clustering.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import AgglomerativeClustering

# 1:1 false-match rate of the cut: strict, as for folder labels (many pairs are compared).
CLUSTER_FMR = 1e-4


@dataclass(frozen=True)
class Cluster:
    cluster_id: str
    face_ids: list[str]


def cluster_faces(
    ids: list[str],
    vectors: np.ndarray,
    quality: np.ndarray,
    threshold: float,
    min_size: int,
) -> list[Cluster]:
    """Clusters of at least ``min_size`` faces, largest first; faces best quality first."""
    if len(ids) < max(min_size, 2):
        return []
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
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
    out = []
    for rows in groups.values():
        if len(rows) < min_size:
            continue
        rows.sort(key=lambda r: -float(quality[r]))
        faces = [ids[r] for r in rows]
        digest = hashlib.sha1("\n".join(sorted(faces)).encode()).hexdigest()[:16]
        out.append(Cluster(f"c-{digest}", faces))
    out.sort(key=lambda c: (-len(c.face_ids), c.cluster_id))
    return out
