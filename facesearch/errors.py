"""Errors the SDK raises itself (a failed RPC stays a grpc.RpcError), and a one-line
explanation of any failure for people at a terminal."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


class FacesearchError(Exception):
    """Base of the SDK's own errors."""


class NoFaceFound(FacesearchError):
    def __init__(self, image: str) -> None:
        super().__init__(f"no face found in {image}: use a photo with a visible face")
        self.image = image


class CollectionMismatch(FacesearchError):
    """The collection lacks what a flow needs (e.g. a text field for a text search)."""


_HINTS = {
    grpc.StatusCode.UNAVAILABLE: "is the service running and the address right? "
    "(`facesearch serve` starts all three; set FACESEARCH_<SERVICE>_ADDRESS otherwise)",
    grpc.StatusCode.UNAUTHENTICATED: "pass an API key with --api-key or FACESEARCH_API_KEY",
    grpc.StatusCode.UNIMPLEMENTED: "this server does not serve that call yet",
    grpc.StatusCode.DEADLINE_EXCEEDED: "the call ran out of time: raise --timeout",
}


def explain(error: BaseException, service: str | None = None) -> str:
    """What failed and what to do, in one line."""
    if isinstance(error, grpc.RpcError) and callable(getattr(error, "code", None)):
        code = error.code()  # type: ignore[attr-defined]
        where = f"{service}: " if service else ""
        text = f"{where}{code.name}: {error.details() or '(no details)'}"
        hint = _HINTS.get(code)
        return f"{text} — {hint}" if hint else text
    return str(error) or type(error).__name__


def field_violations(error: grpc.RpcError) -> list[tuple[str, str]]:
    """The (field, description) pairs of an INVALID_ARGUMENT's ``google.rpc.BadRequest`` detail.

    Every facesearch service attaches one, naming each bad field by its proto path
    (``points[0].metadata``); empty for errors without the detail.
    """
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        return []
    out: list[tuple[str, str]] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out.extend((v.field, v.description) for v in bad.field_violations)
    return out
