"""gRPC adapter of the personalizer: checks requests, then hands them to the session logic."""

from __future__ import annotations

import grpc

from facesearch_contract.limits import max_bytes as declared_max_bytes
from facesearch_contract.limits import max_items, value_range
from facesearch_contract.v1 import personalizer_pb2 as pb
from facesearch_contract.v1 import personalizer_service_pb2_grpc as pb_grpc
from facesearch_server.personalizer import metrics
from facesearch_server.personalizer.sessions import Sessions
from facesearch_server.runtime.auth import current_tenant
from facesearch_server.runtime.config import ServerConfig
from facesearch_server.runtime.errors import InvalidArgument
from facesearch_server.runtime.validation import batch_size, in_range, max_bytes, require

# As the contract declares them (personalizer.proto).
K_RANGE = value_range(pb.StartSessionRequest, "k")
FEEDBACK_K_RANGE = value_range(pb.SubmitFeedbackRequest, "k")
MAX_FEEDBACK = max_items(pb.SubmitFeedbackRequest, "feedback")
_LABELS = frozenset(
    (
        pb.FEEDBACK_LABEL_SIMILAR,
        pb.FEEDBACK_LABEL_DISSIMILAR,
        pb.FEEDBACK_LABEL_FOUND,
        pb.FEEDBACK_LABEL_NOT_PERSON_BUT_SIMILAR,
        pb.FEEDBACK_LABEL_NOT_PERSON_NOTHING_LIKE,
    )
)
_LABEL_NAMES = (
    "SIMILAR, DISSIMILAR, FOUND, NOT_PERSON_BUT_SIMILAR or NOT_PERSON_NOTHING_LIKE "
    "(FEEDBACK_LABEL_*)"
)


UserRequest = pb.StartSessionRequest | pb.ResetUserRequest | pb.DescribeUserRequest


def _check_user(request: UserRequest) -> None:
    # Each request's own user_id declaration: they agree today, and may not always.
    require(request.user_id, "user_id")
    max_bytes(request.user_id, "user_id", declared_max_bytes(type(request), "user_id"))


class PersonalizerServicer(pb_grpc.PersonalizerServicer):
    def __init__(self, cfg: ServerConfig, sessions: Sessions) -> None:
        self.cfg = cfg
        self.sessions = sessions

    async def StartSession(
        self, request: pb.StartSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.StartSessionResponse:
        _check_user(request)
        require(request.collection, "collection")
        if request.k:
            in_range(request.k, "k", *K_RANGE)
        state = await self.sessions.start(current_tenant(), request, context)
        metrics.SESSIONS_STARTED.inc()
        return pb.StartSessionResponse(state=state)

    async def SubmitFeedback(
        self, request: pb.SubmitFeedbackRequest, context: grpc.aio.ServicerContext
    ) -> pb.SubmitFeedbackResponse:
        require(request.session_id, "session_id")
        require(request.feedback, "feedback")
        batch_size(request.feedback, "feedback", MAX_FEEDBACK)
        if request.k:
            in_range(request.k, "k", *FEEDBACK_K_RANGE)
        for i, item in enumerate(request.feedback):
            require(item.id, f"feedback[{i}].id")
            if item.label not in _LABELS:
                # proto3 enums are open: an unknown number arrives as is, never as an error.
                what = f"{item.label}, not a known label" if item.label else "unspecified"
                raise InvalidArgument(f"feedback[{i}].label", f"is {what}: use {_LABEL_NAMES}")
        labels: dict[str, int] = {}
        for i, item in enumerate(request.feedback):
            if labels.setdefault(item.id, item.label) != item.label:
                raise InvalidArgument(
                    f"feedback[{i}]",
                    f"face {item.id[:40]!r} is labelled twice, differently: give it one label",
                )
        state = await self.sessions.feedback(current_tenant(), request, context)
        metrics.FEEDBACK_ROUNDS.labels(str(state.finished).lower()).inc()
        return pb.SubmitFeedbackResponse(state=state)

    async def UndoFeedback(
        self, request: pb.UndoFeedbackRequest, context: grpc.aio.ServicerContext
    ) -> pb.UndoFeedbackResponse:
        require(request.session_id, "session_id")
        if request.round == 0:
            raise InvalidArgument(
                "round", "is 0: name the session's current round (SessionState.round), 1 or more"
            )
        state = await self.sessions.undo(current_tenant(), request)
        return pb.UndoFeedbackResponse(state=state)

    async def GetSession(
        self, request: pb.GetSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetSessionResponse:
        require(request.session_id, "session_id")
        return await self.sessions.get(current_tenant(), request.session_id)

    async def EndSession(
        self, request: pb.EndSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.EndSessionResponse:
        require(request.session_id, "session_id")
        return await self.sessions.end(current_tenant(), request.session_id)

    async def ResetUser(
        self, request: pb.ResetUserRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResetUserResponse:
        _check_user(request)
        n = await self.sessions.reset_user(current_tenant(), request.user_id, request.model_id)
        return pb.ResetUserResponse(heads_deleted=n)

    async def DescribeUser(
        self, request: pb.DescribeUserRequest, context: grpc.aio.ServicerContext
    ) -> pb.DescribeUserResponse:
        _check_user(request)
        return await self.sessions.describe_user(current_tenant(), request.user_id)
