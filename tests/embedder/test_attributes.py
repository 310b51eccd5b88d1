"""Face attributes (the shipped attribute model) and descriptions read into attribute
evidence (DescriptionReader over the real MiniLM), in-process and through the service."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import numpy as np
import pytest

from facesearch_contract.v1 import embedder_pb2 as pb
from facesearch_server.embedder import model_cards
from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder.attributes import names as an
from facesearch_server.embedder.attributes.description import (
    DescriptionReader,
    Evidence,
    query_vector,
    runs,
)
from facesearch_server.embedder.attributes.train import predict_onnx
from facesearch_server.embedder.backends.local import LocalRuntime
from facesearch_server.embedder.text_encoding import TextTokenizer
from tests.embedder.conftest import package_photos


@pytest.fixture(scope="module")
def read(model_dir: Path):  # type: ignore[no-untyped-def]
    """texts -> evidence, through MiniLM in-process (no batcher: one event loop per call)."""
    runtime = LocalRuntime(model_dir, intra_op_threads=1)
    runtime.load()
    tokenizer = TextTokenizer()

    async def embed(texts: list[str]) -> np.ndarray:
        out = runtime.infer_sync(mf.MINILM, tokenizer.encode(texts))
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def run(text: str) -> list[tuple[str, bool]]:
        (evidence,) = asyncio.run(DescriptionReader(embed).read_many([text]))
        return [(e.name, e.present) for e in evidence]

    return run


def test_the_shipped_model_gives_one_probability_per_attribute() -> None:
    x = np.random.default_rng(0).normal(size=(4, 128)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    crops = np.random.default_rng(1).integers(0, 256, size=(4, 112, 112, 3), dtype=np.uint8)
    p = predict_onnx(x, crops, mf.attributes_source())
    assert p.shape == (4, len(an.NAMES))
    assert ((p > 0) & (p < 1)).all()
    # Stored vector: [log p, log(1-p)], so a reading's weight picks its log-likelihood.
    v = an.attribute_vector(p)
    assert v.shape == (4, 2 * len(an.NAMES)) and (v < 0).all()


def test_the_card_names_the_attributes_split_and_accuracy() -> None:
    card = model_cards.shipped_card(mf.ATTRIBUTES)
    assert card is not None
    assert card["attributes"] == list(an.NAMES)
    assert card["training"]["identity_split"]["shared_identities"] == 0
    assert set(card["evaluation"]["balanced_accuracy"]["clean"]) == set(an.NAMES)
    json.dumps(card)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "an older man with glasses and no beard",
            [("young", False), ("male", True), ("eyeglasses", True), ("beard", False)],
        ),
        (
            "a young woman with blonde hair, smiling",
            [("young", True), ("male", False), ("blond_hair", True), ("smiling", True)],
        ),
        ("no beard or glasses", [("beard", False), ("eyeglasses", False)]),
        (
            "a clean-shaven man who doesn't wear glasses",
            [("beard", False), ("male", True), ("eyeglasses", False)],
        ),
        ("she is not smiling", [("male", False), ("smiling", False)]),
        ("a man in his 60s wearing a cap", [("young", False), ("male", True), ("hat", True)]),
        (
            "man with spectacles and a moustache",
            [("male", True), ("eyeglasses", True), ("mustache", True)],
        ),
        ("a person in a photo wearing a jacket at a press conference", []),
    ],
)
def test_descriptions_read_into_attribute_evidence(read, text: str, expected: list) -> None:  # type: ignore[no-untyped-def]
    assert read(text) == expected


def test_negation_scope_ends_at_the_next_clause() -> None:
    negated = {r.words: r.negated for r in runs("no hat but glasses")}
    assert negated["hat"] is True and negated["glasses"] is False
    assert {r.words: r.negated for r in runs("without a beard")}["beard"] is True


def test_query_vector_weights_each_reading_once() -> None:
    n = len(an.NAMES)
    q = query_vector([Evidence("male", True, 1.0, "man"), Evidence("beard", False, 1.0, "beard")])
    assert q[an.NAMES.index("male")] == pytest.approx(0.5)
    assert q[n + an.NAMES.index("beard")] == pytest.approx(0.5)
    assert q.sum() == pytest.approx(1.0)
    assert not query_vector([]).any()


def test_the_service_returns_attributes_and_evidence(stub) -> None:  # type: ignore[no-untyped-def]
    photo = package_photos()[0].read_bytes()
    reply = stub.EmbedImages(pb.EmbedImagesRequest(images=[pb.ImageInput(data=photo)]), timeout=60)
    face = reply.results[0].faces[0]
    assert face.attributes.model_id == mf.ATTRIBUTES
    assert len(face.attributes.probabilities) == len(an.NAMES)
    assert len(face.attributes.vector.values) == 2 * len(an.NAMES)

    text = "an older man with glasses and no beard"
    described = stub.EmbedText(
        pb.EmbedTextRequest(texts=[text], role=pb.TEXT_ROLE_DESCRIPTION), timeout=60
    )
    (evidence,) = described.descriptions
    assert evidence.attribute_model_id == mf.ATTRIBUTES
    assert [(e.name, e.present) for e in evidence.evidence] == [
        ("young", False),
        ("male", True),
        ("eyeglasses", True),
        ("beard", False),
    ]
    assert {e.phrase for e in evidence.evidence} == {"older", "man", "glasses", "beard"}
    assert sum(evidence.query_vector.values) == pytest.approx(1.0)
    # The neutral score of a face of unknown attributes: the evidence's likelihood under the
    # training prevalences the card states.
    prevalence = model_cards.card_for(mf.ATTRIBUTES, None)["training"]["prevalence"]
    prior = an.attribute_vector(np.array([prevalence[n] for n in an.NAMES]))
    expected = float(np.dot(evidence.query_vector.values, prior))
    assert evidence.prior_score == pytest.approx(expected, abs=1e-5) and expected < -0.3
    # Other roles carry no evidence: a query is not a description of a face.
    plain = stub.EmbedText(pb.EmbedTextRequest(texts=[text]), timeout=60)
    assert not plain.descriptions


@pytest.mark.parametrize("text", ["", "   ", "glasses " * 300, "glasses " * 3000])
def test_a_bad_description_is_invalid_argument(stub, text: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as err:
        stub.EmbedText(pb.EmbedTextRequest(texts=[text], role=pb.TEXT_ROLE_DESCRIPTION), timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "texts[0]" in err.value.details()
