"""A request whose bytes are not a valid protobuf message (invalid UTF-8 in a string field,
nesting past the parser's depth limit) is INVALID_ARGUMENT naming the message type, on every
service and for unary and streaming requests alike: never UNKNOWN or INTERNAL with a Python
exception name.

The bytes go over a real channel with identity serializers, as a buggy or hostile client in
another language would send them.
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.internal import encoder

from facesearch_contract.v1 import retriever_pb2
from harness.service_process import ServiceProcess


def _tag(number: int, wire_type: int) -> bytes:
    return encoder._VarintBytes((number << 3) | wire_type)


# Field 1 of every request below is a string; 0xff 0xfe is not UTF-8.
BAD_UTF8 = _tag(1, 2) + b"\x02\xff\xfe"
# 200 nested groups of an unknown field: past the parser's recursion limit (100).
TOO_DEEP = _tag(1000, 3) * 200 + _tag(1000, 4) * 200

UNARY = [
    ("retriever", "/facesearch.v1.Retriever/DescribeCollection", "DescribeCollectionRequest"),
    ("retriever", "/facesearch.v1.Persons/ListPersons", "ListPersonsRequest"),
    ("embedder", "/facesearch.v1.Embedder/EmbedText", "EmbedTextRequest"),
    ("personalizer", "/facesearch.v1.Personalizer/StartSession", "StartSessionRequest"),
]


def _identity(b: bytes) -> bytes:
    return b


def _check(err: grpc.RpcError, message_type: str) -> None:
    code, details = err.code(), err.details()  # type: ignore[attr-defined]
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    assert f"facesearch.v1.{message_type}" in details, details
    # No internals: neither the exception's class nor a module path.
    assert "DecodeError" not in details and "google.protobuf" not in details, details
    assert "Exception" not in details and "<class" not in details, details


@pytest.mark.parametrize("payload", [BAD_UTF8, TOO_DEEP], ids=["bad-utf8", "too-deep"])
@pytest.mark.parametrize(("service", "method", "message_type"), UNARY)
def test_unary_request_that_does_not_parse_is_invalid_argument(
    services: dict[str, ServiceProcess],
    service: str,
    method: str,
    message_type: str,
    payload: bytes,
) -> None:
    channel = services[service].channel()
    call = channel.unary_unary(
        method, request_serializer=_identity, response_deserializer=_identity
    )
    with pytest.raises(grpc.RpcError) as err:
        call(payload, timeout=10)
    _check(err.value, message_type)


@pytest.mark.parametrize("payload", [BAD_UTF8, TOO_DEEP], ids=["bad-utf8", "too-deep"])
def test_streamed_request_that_does_not_parse_is_invalid_argument(
    services: dict[str, ServiceProcess], payload: bytes
) -> None:
    channel = services["retriever"].channel()
    call = channel.stream_stream(
        "/facesearch.v1.Retriever/UpsertStream",
        request_serializer=_identity,
        response_deserializer=_identity,
    )
    with pytest.raises(grpc.RpcError) as err:
        list(call(iter([payload]), timeout=10))
    _check(err.value, "UpsertRequest")


def test_a_valid_request_still_parses(services: dict[str, ServiceProcess]) -> None:
    channel = services["retriever"].channel()
    call = channel.unary_unary(
        "/facesearch.v1.Retriever/ListCollections",
        request_serializer=_identity,
        response_deserializer=_identity,
    )
    # The empty message is a valid ListCollectionsRequest: the reply parses as the response.
    reply = retriever_pb2.ListCollectionsResponse.FromString(call(b"", timeout=10))
    assert all(c.name for c in reply.collections)
