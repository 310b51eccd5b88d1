"""A missing or malformed field gets INVALID_ARGUMENT naming the field, in the message and in a
google.rpc.BadRequest detail (read with facesearch.errors.field_violations)."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from facesearch.errors import field_violations
from facesearch_contract.v1 import common_pb2, embedder_pb2, personalizer_pb2, retriever_pb2
from facesearch_contract.v1.embedder_service_pb2_grpc import EmbedderStub
from facesearch_contract.v1.personalizer_service_pb2_grpc import PersonalizerStub
from facesearch_contract.v1.retriever_service_pb2_grpc import RetrieverStub
from harness.service_process import ServiceProcess

Call = Callable[[grpc.Channel], object]

CASES: list[tuple[str, str, Call]] = [
    (
        "personalizer",
        "user_id",
        lambda ch: PersonalizerStub(ch).StartSession(
            personalizer_pb2.StartSessionRequest(collection="faces"), timeout=10
        ),
    ),
    (
        "personalizer",
        "k",
        lambda ch: PersonalizerStub(ch).StartSession(
            personalizer_pb2.StartSessionRequest(user_id="u", collection="faces", k=65),
            timeout=10,
        ),
    ),
    (
        "personalizer",
        "feedback[0].label",
        lambda ch: PersonalizerStub(ch).SubmitFeedback(
            personalizer_pb2.SubmitFeedbackRequest(
                session_id="s", feedback=[personalizer_pb2.Feedback(id="a")]
            ),
            timeout=10,
        ),
    ),
    (
        "embedder",
        "images",
        lambda ch: EmbedderStub(ch).EmbedImages(embedder_pb2.EmbedImagesRequest(), timeout=10),
    ),
    (
        "embedder",
        "images[0].data",
        lambda ch: EmbedderStub(ch).EmbedImages(
            embedder_pb2.EmbedImagesRequest(images=[embedder_pb2.ImageInput(data=b"not an image")]),
            timeout=30,
        ),
    ),
    (
        "embedder",
        "options.score_threshold",
        lambda ch: EmbedderStub(ch).EmbedImages(
            embedder_pb2.EmbedImagesRequest(
                images=[embedder_pb2.ImageInput(data=b"x")],
                options=embedder_pb2.DetectionOptions(score_threshold=2.0),
            ),
            timeout=30,
        ),
    ),
    (
        "embedder",
        "model_id",
        lambda ch: EmbedderStub(ch).EmbedText(
            embedder_pb2.EmbedTextRequest(texts=["a face"], model_id="no-such-model"), timeout=30
        ),
    ),
    (
        "embedder",
        "texts",
        lambda ch: EmbedderStub(ch).EmbedText(embedder_pb2.EmbedTextRequest(), timeout=10),
    ),
    (
        "retriever",
        "name",
        lambda ch: RetrieverStub(ch).CreateCollection(
            retriever_pb2.CreateCollectionRequest(name="Bad Name!"), timeout=10
        ),
    ),
]


@pytest.mark.parametrize(("service", "field", "call"), CASES, ids=[f"{s}:{f}" for s, f, _ in CASES])
def test_bad_field_is_invalid_argument_naming_it(
    services: dict[str, ServiceProcess], service: str, field: str, call: Call
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        call(services[service].channel())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert err.value.details().startswith(f"{field}:"), err.value.details()
    violations = field_violations(err.value)
    assert [f for f, _ in violations] == [field]
    assert violations[0][1]  # says what is wrong


def test_too_large_batch_is_resource_exhausted_not_invalid(
    services: dict[str, ServiceProcess],
) -> None:
    request = embedder_pb2.EmbedTextRequest(texts=["a face"] * 10_000)
    with pytest.raises(grpc.RpcError) as err:
        EmbedderStub(services["embedder"].channel()).EmbedText(request, timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "split the batch" in err.value.details()


def test_field_violations_is_empty_for_errors_without_detail(
    services: dict[str, ServiceProcess],
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        services["embedder"].health("facesearch.v1.Nope")
    assert field_violations(err.value) == []


@pytest.mark.parametrize("size", [200, 10_000])
def test_an_oversized_name_is_refused_with_a_short_message(
    services: dict[str, ServiceProcess], size: int
) -> None:
    # The whole name echoed back would overflow gRPC's trailer: the caller would see a transport
    # error instead of INVALID_ARGUMENT.
    stub = RetrieverStub(services["retriever"].channel())
    for request, call in (
        (retriever_pb2.CreateCollectionRequest(name="x" * size), stub.CreateCollection),
        (retriever_pb2.SetAliasRequest(alias="y" * size, collection="c"), stub.SetAlias),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call(request, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert len(err.value.details()) < 300 and "characters" in err.value.details()


def test_values_that_would_be_silently_misread_are_refused(
    services: dict[str, ServiceProcess],
) -> None:
    """A NaN min_score (compares false with everything), an enum number the contract does not
    define, one face labelled two ways in one call, and a page token this server never issued
    used to be accepted; each now names its field."""
    retriever = RetrieverStub(services["retriever"].channel())
    field = retriever_pb2.VectorFieldSpec(name="face", dimension=2, model_id="m")
    retriever.CreateCollection(
        retriever_pb2.CreateCollectionRequest(name="misread", vector_fields=[field]), timeout=10
    )
    term = retriever_pb2.QueryTerm(
        field="face", model_id="m", vector=common_pb2.Vector(values=[1.0, 0.0])
    )
    nan = retriever_pb2.SearchRequest(
        collection="misread",
        queries=[retriever_pb2.Query(terms=[term], k=1, min_score=float("nan"))],
    )
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: retriever.Search(nan, timeout=10), "queries[0].min_score"),
        (
            lambda: EmbedderStub(services["embedder"].channel()).EmbedText(
                embedder_pb2.EmbedTextRequest(texts=["a"], role=99),
                timeout=30,  # type: ignore[arg-type]
            ),
            "role",
        ),
        (
            lambda: PersonalizerStub(services["personalizer"].channel()).SubmitFeedback(
                personalizer_pb2.SubmitFeedbackRequest(
                    session_id="s",
                    feedback=[
                        personalizer_pb2.Feedback(
                            id="f1", label=personalizer_pb2.FEEDBACK_LABEL_SIMILAR
                        ),
                        personalizer_pb2.Feedback(
                            id="f1", label=personalizer_pb2.FEEDBACK_LABEL_DISSIMILAR
                        ),
                    ],
                ),
                timeout=10,
            ),
            "feedback[1]",
        ),
        (
            lambda: retriever.ListCollections(
                retriever_pb2.ListCollectionsRequest(
                    page=common_pb2.PageRequest(page_token="garbage!")
                ),
                timeout=10,
            ),
            "page.page_token",
        ),
    ]
    for call, path in cases:
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (path, err.value.details())
        assert err.value.details().startswith(path), err.value.details()
