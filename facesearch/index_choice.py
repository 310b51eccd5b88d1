"""The face field's index when the SDK creates a collection: its kind and tuning objective.

The retriever tunes an HNSW / IVF_PQ field's search width after each build to reach
``target_recall`` of one of two objectives (retriever.proto, TuningObjective):

- ``"recall_at_k"`` (the retriever's default): recall@10 against exact search, every neighbour
  of the top 10 counted, strangers far down the list as much as the best match;
- ``"above_threshold"``: only the exact top-10 neighbours scoring at or above ``min_score``
  (for a face field, the model's match threshold for the collection's size: nearly all the
  same person's other photos). On real faces it reached 0.99 at a seventh of the width
  recall@10 0.95 needs (bench/retriever/README.md, "Identification recall").

Describe shows both measured figures whatever the objective (VectorFieldStats.measured_recall,
measured_above_threshold_recall) and, in effective_index.tuning_objective, the objective in
force (RECALL_AT_K where the sample held too few neighbours above min_score to measure).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from facesearch.errors import FacesearchError
from facesearch_contract.v1 import retriever_pb2

KINDS = {
    "flat": retriever_pb2.INDEX_KIND_FLAT,
    "hnsw": retriever_pb2.INDEX_KIND_HNSW,
    "ivf_pq": retriever_pb2.INDEX_KIND_IVF_PQ,
}
OBJECTIVES = {
    "recall_at_k": retriever_pb2.TUNING_OBJECTIVE_RECALL_AT_K,
    "above_threshold": retriever_pb2.TUNING_OBJECTIVE_ABOVE_THRESHOLD,
}


@dataclass(frozen=True)
class FaceIndex:
    """How the face field is indexed; ``FaceIndex()`` is the retriever's default (exact search).

    ``kind``: "flat" (exact), "hnsw" or "ivf_pq". ``objective``: "recall_at_k" or
    "above_threshold" (approximate kinds only; the latter needs ``min_score``).
    ``target_recall``: in (0, 1], None = the retriever's 0.95. ``min_score``: the score (cosine)
    at or above which a result counts; with "recall_at_k" it is only measured."""

    kind: str = "flat"
    objective: str = "recall_at_k"
    target_recall: float | None = None
    min_score: float | None = None

    def __post_init__(self) -> None:
        # Checked here so a wrong choice fails before the embedder and retriever are called.
        if self.kind not in KINDS:
            raise FacesearchError(f"index kind {self.kind!r}: use one of {sorted(KINDS)}")
        if self.objective not in OBJECTIVES:
            raise FacesearchError(
                f"tuning objective {self.objective!r}: use one of {sorted(OBJECTIVES)}"
            )
        approximate = self.kind != "flat"
        if not approximate and (
            self.objective != "recall_at_k"
            or self.min_score is not None
            or self.target_recall is not None
        ):
            raise FacesearchError(
                "a flat (exact) face index has no search width to tune: choose kind 'hnsw' or "
                "'ivf_pq' to set a tuning objective, target recall or min score"
            )
        if self.objective == "above_threshold" and self.min_score is None:
            raise FacesearchError(
                "the 'above_threshold' objective needs min_score: the face model's match "
                "threshold for the collection's size (SFace: about 0.60 at 20k faces, 0.64 at "
                "100k, 0.70 at 1M)"
            )
        if self.min_score is not None and not -1.0 <= self.min_score <= 1.0:
            raise FacesearchError(f"min_score {self.min_score} is not a cosine in [-1, 1]")
        if self.target_recall is not None and not (
            math.isfinite(self.target_recall) and 0.0 < self.target_recall <= 1.0
        ):
            raise FacesearchError(f"target_recall {self.target_recall} is not in (0, 1]")

    def params(self) -> retriever_pb2.IndexParams:
        """The field's IndexParams; unset numbers stay 0 (the retriever's defaults)."""
        out = retriever_pb2.IndexParams(kind=KINDS[self.kind])
        if self.kind != "flat":
            out.tuning_objective = OBJECTIVES[self.objective]
            out.target_recall = self.target_recall or 0.0
            if self.min_score is not None:
                out.min_score = self.min_score
        return out
