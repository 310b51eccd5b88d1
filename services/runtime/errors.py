"""Domain errors and the one place that maps them to gRPC status codes.

Service code raises these (never calls ``context.abort`` itself), so every service answers the
same way: a standard code, a message that says what to fix, and for bad fields a
``google.rpc.BadRequest`` detail naming each one.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

# gRPC carries the status message in a trailer that proxies and clients cap (8-16 KiB); a
# message built from a caller's oversized input must never turn into a transport error.
MAX_MESSAGE_CHARS = 1024


def _bounded(text: str) -> str:
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    return text[: MAX_MESSAGE_CHARS - 20] + f"... ({len(text):,} chars)"


class ServiceError(Exception):
    """Base of the errors a service reports to its caller."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        message = _bounded(message)
        super().__init__(message)
        self.message = message

    def to_status(self) -> status_pb2.Status:
        return status_pb2.Status(code=self.code.value[0], message=self.message)


class InvalidArgument(ServiceError):
    """A request field is missing or malformed; ``field`` is its proto path."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        field, problem = _bounded(field)[:256], _bounded(problem)
        super().__init__(f"{field}: {problem}")
        self.violations = [(field, problem)]

    def to_status(self) -> status_pb2.Status:
        detail = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                for f, d in self.violations
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(detail)
        return status_pb2.Status(
            code=code_pb2.INVALID_ARGUMENT, message=self.message, details=[packed]
        )


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(ServiceError):
    """A concurrent change won every retry (optimistic concurrency); the caller may retry."""

    code = grpc.StatusCode.ABORTED


class ResourceExhausted(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ServiceError):
    """A dependency (Triton, Redis, a shard) cannot be reached; the caller may retry."""

    code = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unimplemented(ServiceError):
    code = grpc.StatusCode.UNIMPLEMENTED


class DeadlineExceeded(ServiceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


def to_rpc_status(err: ServiceError) -> grpc.Status:
    """The ``grpc.Status`` to abort with, details included in the trailing metadata."""
    return rpc_status.to_status(err.to_status())


# The reverse map, for calls to other services: one status means one domain error everywhere,
# so a router and the personalizer agree on what a peer's answer meant.
_FROM_CODE: dict[grpc.StatusCode, type[ServiceError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ABORTED: Aborted,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
}


def from_rpc_error(error: grpc.RpcError, peer: str) -> ServiceError:
    """The domain error for a failed call to ``peer`` (another service or a shard server).

    The peer's message is kept, prefixed with who said it. INVALID_ARGUMENT stays a caller
    error (field = the peer); CANCELLED, UNAVAILABLE and anything unexpected (UNKNOWN, INTERNAL,
    DATA_LOSS) become ``Unavailable``: the peer cannot serve this now, and the caller may retry
    or, in a router, answer without that shard. DEADLINE_EXCEEDED stays a deadline: a router
    that gives partial results treats it like ``Unavailable`` (see ``peer_down``).
    """
    code = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
    detail = (error.details() if callable(getattr(error, "details", None)) else "") or code.name
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(peer, detail)
    cls = _FROM_CODE.get(code)
    if cls is not None:
        return cls(f"{peer}: {detail}")
    if code == grpc.StatusCode.CANCELLED:
        return Unavailable(f"the call to {peer} was cancelled: {detail}")
    return Unavailable(f"{peer} cannot serve this now ({code.name}: {detail}); retry")


def peer_down(error: ServiceError) -> bool:
    """Whether a mapped peer error means the peer did not answer in time or at all."""
    return isinstance(error, Unavailable | DeadlineExceeded)
