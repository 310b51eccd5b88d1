"""The one reverse error map (runtime.errors.from_rpc_error): a peer's status becomes the same
domain error in every service, keeping the peer's words and naming the peer."""

from __future__ import annotations

import grpc
import pytest

from facesearch_server.runtime import errors

PEER = "retriever"
DETAIL = "collection 'faces' not found in this tenant"

# Each code a peer can answer with, and the domain error (hence the code) the caller gets.
EXPECTED: dict[grpc.StatusCode, type[errors.ServiceError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.ABORTED: errors.Aborted,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
    grpc.StatusCode.UNIMPLEMENTED: errors.Unimplemented,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
    # The peer cannot serve this now: the caller may retry (a router may answer without it).
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.CANCELLED: errors.Unavailable,
    grpc.StatusCode.UNKNOWN: errors.Unavailable,
    grpc.StatusCode.INTERNAL: errors.Unavailable,
    grpc.StatusCode.DATA_LOSS: errors.Unavailable,
    grpc.StatusCode.OUT_OF_RANGE: errors.Unavailable,
}


def rpc_error(code: grpc.StatusCode, details: str | None = DETAIL) -> grpc.aio.AioRpcError:
    """The error a grpc.aio stub raises for a call the peer answered with ``code``."""
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


def test_every_failure_code_is_mapped() -> None:
    assert set(EXPECTED) == set(grpc.StatusCode) - {grpc.StatusCode.OK}


@pytest.mark.parametrize("code", list(EXPECTED), ids=lambda c: c.name)
def test_each_code_becomes_its_domain_error(code: grpc.StatusCode) -> None:
    err = errors.from_rpc_error(rpc_error(code), PEER)
    assert type(err) is EXPECTED[code]
    assert err.code == EXPECTED[code].code
    assert err.to_status().code == EXPECTED[code].code.value[0]
    assert DETAIL in err.message, err.message  # the peer's own words are kept
    assert PEER in err.message, err.message  # and who said them


def test_invalid_argument_names_the_peer_as_the_field() -> None:
    err = errors.from_rpc_error(rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "k: is 0"), PEER)
    assert isinstance(err, errors.InvalidArgument)
    assert err.violations == [(PEER, "k: is 0")]
    assert err.message == f"{PEER}: k: is 0"


def test_an_answer_without_details_still_says_what_happened() -> None:
    err = errors.from_rpc_error(rpc_error(grpc.StatusCode.UNAVAILABLE, None), "embedder")
    assert isinstance(err, errors.Unavailable)
    assert "embedder" in err.message and "UNAVAILABLE" in err.message


def test_an_error_without_a_status_is_unavailable() -> None:
    class Bare(grpc.RpcError):
        pass

    err = errors.from_rpc_error(Bare(), "shard 3")
    assert isinstance(err, errors.Unavailable) and "shard 3" in err.message


@pytest.mark.parametrize("code", list(EXPECTED), ids=lambda c: c.name)
def test_peer_down_only_for_no_answer(code: grpc.StatusCode) -> None:
    down = errors.peer_down(errors.from_rpc_error(rpc_error(code), PEER))
    assert down == (EXPECTED[code] in (errors.Unavailable, errors.DeadlineExceeded))
