"""What a field's metric means: the FAISS metric it maps to and exact similarity scores.

Scores are "higher is more similar" for every metric (L2 distances are negated), so callers
sort and merge them one way.
"""

from __future__ import annotations

import faiss
import numpy as np

from facesearch_contract.v1 import retriever_pb2 as pb


def faiss_metric(metric: int) -> int:
    return faiss.METRIC_L2 if metric == pb.METRIC_L2 else faiss.METRIC_INNER_PRODUCT


def exact_scores(metric: int, q: np.ndarray, vecs: np.ndarray) -> np.ndarray:
    """Similarity of one query ``q`` to each row of ``vecs``."""
    if metric == pb.METRIC_L2:
        return -(((vecs - q) ** 2).sum(axis=1))
    return vecs @ q
