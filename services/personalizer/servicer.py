"""gRPC adapter of the personalizer: checks requests, then hands them to the session logic.

Until the FaIRCoP session logic lands (issue 5) valid requests answer UNIMPLEMENTED.
"""

from __future__ import annotations

import grpc

from facesearch.v1 import personalizer_pb2 as pb
from facesearch.v1 import personalizer_service_pb2_grpc as pb_grpc
from services.runtime.config import ServerConfig
from services.runtime.errors import InvalidArgument, Unimplemented
from services.runtime.validation import in_range, max_bytes, require

MAX_USER_ID_BYTES = 256
MAX_K = 64


def _check_user(user_id: str) -> None:
    require(user_id, "user_id")
    max_bytes(user_id, "user_id", MAX_USER_ID_BYTES)


class PersonalizerServicer(pb_grpc.PersonalizerServicer):
    def __init__(self, cfg: ServerConfig) -> None:
        self.cfg = cfg

    async def StartSession(
        self, request: pb.StartSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.StartSessionResponse:
        _check_user(request.user_id)
        require(request.collection, "collection")
        if request.k:
            in_range(request.k, "k", 1, MAX_K)
        raise Unimplemented("StartSession is not served yet (personalizer, issue 5)")

    async def SubmitFeedback(
        self, request: pb.SubmitFeedbackRequest, context: grpc.aio.ServicerContext
    ) -> pb.SubmitFeedbackResponse:
        require(request.session_id, "session_id")
        require(request.feedback, "feedback")
        for i, item in enumerate(request.feedback):
            require(item.id, f"feedback[{i}].id")
            if item.label == pb.FEEDBACK_LABEL_UNSPECIFIED:
                raise InvalidArgument(
                    f"feedback[{i}].label", "is unspecified: use SIMILAR, DISSIMILAR or FOUND"
                )
        raise Unimplemented("SubmitFeedback is not served yet (personalizer, issue 5)")

    async def GetSession(
        self, request: pb.GetSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetSessionResponse:
        require(request.session_id, "session_id")
        raise Unimplemented("GetSession is not served yet (personalizer, issue 5)")

    async def EndSession(
        self, request: pb.EndSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.EndSessionResponse:
        require(request.session_id, "session_id")
        raise Unimplemented("EndSession is not served yet (personalizer, issue 5)")

    async def ResetUser(
        self, request: pb.ResetUserRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResetUserResponse:
        _check_user(request.user_id)
        raise Unimplemented("ResetUser is not served yet (personalizer, issue 5)")

    async def DescribeUser(
        self, request: pb.DescribeUserRequest, context: grpc.aio.ServicerContext
    ) -> pb.DescribeUserResponse:
        _check_user(request.user_id)
        raise Unimplemented("DescribeUser is not served yet (personalizer, issue 5)")
