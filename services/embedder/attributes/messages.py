"""Attribute results as the contract's messages (embedder.proto: FaceAttributes,
DescriptionEvidence, the attribute model's ModelInfo)."""

from __future__ import annotations

import numpy as np

from facesearch_contract.v1 import common_pb2 as common
from facesearch_contract.v1 import embedder_pb2 as pb
from facesearch_server.embedder.attributes import names as an
from facesearch_server.embedder.attributes.description import Evidence, query_vector


def face_attributes(probabilities: np.ndarray, model_id: str) -> pb.FaceAttributes:
    return pb.FaceAttributes(
        model_id=model_id,
        probabilities=np.asarray(probabilities, dtype=np.float32).tolist(),
        vector=common.Vector(values=an.attribute_vector(probabilities).tolist()),
    )


def prior_vector(card: dict | None) -> np.ndarray | None:
    """The stored attribute vector of a face predicted at the model's training prevalences
    (its card's training.prevalence), or None when the card states none."""
    prevalence = ((card or {}).get("training") or {}).get("prevalence")
    if not prevalence or any(n not in prevalence for n in an.NAMES):
        return None
    return an.attribute_vector(np.array([prevalence[n] for n in an.NAMES], dtype=np.float32))


def description_evidence(
    evidence: list[Evidence], model_id: str, prior: np.ndarray | None = None
) -> pb.DescriptionEvidence:
    """``prior``: prior_vector of the model; the evidence's likelihood under it is the neutral
    score of a face whose attributes are unknown (DescriptionEvidence.prior_score)."""
    query = query_vector(evidence)
    return pb.DescriptionEvidence(
        evidence=[
            pb.AttributeEvidence(
                name=e.name, present=e.present, confidence=e.confidence, phrase=e.phrase
            )
            for e in evidence
        ],
        attribute_model_id=model_id,
        query_vector=common.Vector(values=query.tolist()),
        prior_score=float(query @ prior) if prior is not None else 0.0,
    )


def model_info(
    model_id: str, backend: str, ready: bool, max_batch: int, card_json: str
) -> pb.ModelInfo:
    return pb.ModelInfo(
        model_id=model_id,
        kind=pb.MODEL_KIND_FACE_ATTRIBUTES,
        # The stored vector's length: [log p, log (1 - p)] per attribute.
        dimension=2 * len(an.NAMES),
        backend=backend,
        ready=ready,
        is_default=True,
        max_batch=max_batch,
        card_json=card_json,
        attribute_names=list(an.NAMES),
    )
