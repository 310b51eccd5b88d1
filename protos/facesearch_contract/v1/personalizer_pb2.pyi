import datetime

from facesearch_contract.v1 import common_pb2 as _common_pb2
from facesearch_contract.v1 import limits_pb2 as _limits_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FeedbackLabel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEEDBACK_LABEL_UNSPECIFIED: _ClassVar[FeedbackLabel]
    FEEDBACK_LABEL_SIMILAR: _ClassVar[FeedbackLabel]
    FEEDBACK_LABEL_DISSIMILAR: _ClassVar[FeedbackLabel]
    FEEDBACK_LABEL_FOUND: _ClassVar[FeedbackLabel]
    FEEDBACK_LABEL_NOT_PERSON_BUT_SIMILAR: _ClassVar[FeedbackLabel]
    FEEDBACK_LABEL_NOT_PERSON_NOTHING_LIKE: _ClassVar[FeedbackLabel]
FEEDBACK_LABEL_UNSPECIFIED: FeedbackLabel
FEEDBACK_LABEL_SIMILAR: FeedbackLabel
FEEDBACK_LABEL_DISSIMILAR: FeedbackLabel
FEEDBACK_LABEL_FOUND: FeedbackLabel
FEEDBACK_LABEL_NOT_PERSON_BUT_SIMILAR: FeedbackLabel
FEEDBACK_LABEL_NOT_PERSON_NOTHING_LIKE: FeedbackLabel

class SessionSeed(_message.Message):
    __slots__ = ("image", "face_vector", "text", "person_id", "point_id", "model_id")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    FACE_VECTOR_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    POINT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    face_vector: _common_pb2.Vector
    text: str
    person_id: str
    point_id: str
    model_id: str
    def __init__(self, image: _Optional[bytes] = ..., face_vector: _Optional[_Union[_common_pb2.Vector, _Mapping]] = ..., text: _Optional[str] = ..., person_id: _Optional[str] = ..., point_id: _Optional[str] = ..., model_id: _Optional[str] = ...) -> None: ...

class StartSessionRequest(_message.Message):
    __slots__ = ("user_id", "collection", "seed", "k", "filter", "ephemeral")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    EPHEMERAL_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    collection: str
    seed: SessionSeed
    k: int
    filter: _common_pb2.Filter
    ephemeral: bool
    def __init__(self, user_id: _Optional[str] = ..., collection: _Optional[str] = ..., seed: _Optional[_Union[SessionSeed, _Mapping]] = ..., k: _Optional[int] = ..., filter: _Optional[_Union[_common_pb2.Filter, _Mapping]] = ..., ephemeral: _Optional[bool] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("id", "score", "metadata", "exploratory")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.MetadataValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.MetadataValue, _Mapping]] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    EXPLORATORY_FIELD_NUMBER: _ClassVar[int]
    id: str
    score: float
    metadata: _containers.MessageMap[str, _common_pb2.MetadataValue]
    exploratory: bool
    def __init__(self, id: _Optional[str] = ..., score: _Optional[float] = ..., metadata: _Optional[_Mapping[str, _common_pb2.MetadataValue]] = ..., exploratory: _Optional[bool] = ...) -> None: ...

class SessionState(_message.Message):
    __slots__ = ("session_id", "round", "candidates", "finished", "found_id", "head_version", "expires", "undoable_rounds")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    FOUND_ID_FIELD_NUMBER: _ClassVar[int]
    HEAD_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    UNDOABLE_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    round: int
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    finished: bool
    found_id: str
    head_version: int
    expires: _timestamp_pb2.Timestamp
    undoable_rounds: int
    def __init__(self, session_id: _Optional[str] = ..., round: _Optional[int] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., finished: _Optional[bool] = ..., found_id: _Optional[str] = ..., head_version: _Optional[int] = ..., expires: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., undoable_rounds: _Optional[int] = ...) -> None: ...

class StartSessionResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: SessionState
    def __init__(self, state: _Optional[_Union[SessionState, _Mapping]] = ...) -> None: ...

class Feedback(_message.Message):
    __slots__ = ("id", "label")
    ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    id: str
    label: FeedbackLabel
    def __init__(self, id: _Optional[str] = ..., label: _Optional[_Union[FeedbackLabel, str]] = ...) -> None: ...

class SubmitFeedbackRequest(_message.Message):
    __slots__ = ("session_id", "feedback", "k")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    feedback: _containers.RepeatedCompositeFieldContainer[Feedback]
    k: int
    def __init__(self, session_id: _Optional[str] = ..., feedback: _Optional[_Iterable[_Union[Feedback, _Mapping]]] = ..., k: _Optional[int] = ...) -> None: ...

class SubmitFeedbackResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: SessionState
    def __init__(self, state: _Optional[_Union[SessionState, _Mapping]] = ...) -> None: ...

class UndoFeedbackRequest(_message.Message):
    __slots__ = ("session_id", "round")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    round: int
    def __init__(self, session_id: _Optional[str] = ..., round: _Optional[int] = ...) -> None: ...

class UndoFeedbackResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: SessionState
    def __init__(self, state: _Optional[_Union[SessionState, _Mapping]] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class GetSessionResponse(_message.Message):
    __slots__ = ("state", "user_id", "collection", "shown_ids")
    STATE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    SHOWN_IDS_FIELD_NUMBER: _ClassVar[int]
    state: SessionState
    user_id: str
    collection: str
    shown_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, state: _Optional[_Union[SessionState, _Mapping]] = ..., user_id: _Optional[str] = ..., collection: _Optional[str] = ..., shown_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class EndSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class EndSessionResponse(_message.Message):
    __slots__ = ("rounds", "head_updated", "head_version")
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    HEAD_UPDATED_FIELD_NUMBER: _ClassVar[int]
    HEAD_VERSION_FIELD_NUMBER: _ClassVar[int]
    rounds: int
    head_updated: bool
    head_version: int
    def __init__(self, rounds: _Optional[int] = ..., head_updated: _Optional[bool] = ..., head_version: _Optional[int] = ...) -> None: ...

class ResetUserRequest(_message.Message):
    __slots__ = ("user_id", "model_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    model_id: str
    def __init__(self, user_id: _Optional[str] = ..., model_id: _Optional[str] = ...) -> None: ...

class ResetUserResponse(_message.Message):
    __slots__ = ("heads_deleted",)
    HEADS_DELETED_FIELD_NUMBER: _ClassVar[int]
    heads_deleted: int
    def __init__(self, heads_deleted: _Optional[int] = ...) -> None: ...

class DescribeUserRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class HeadInfo(_message.Message):
    __slots__ = ("model_id", "version", "rounds_trained", "updated", "drift", "sessions_trained", "distance_from_identity", "probe_cosine_change")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_TRAINED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    DRIFT_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_TRAINED_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FROM_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    PROBE_COSINE_CHANGE_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    version: int
    rounds_trained: int
    updated: _timestamp_pb2.Timestamp
    drift: float
    sessions_trained: int
    distance_from_identity: float
    probe_cosine_change: float
    def __init__(self, model_id: _Optional[str] = ..., version: _Optional[int] = ..., rounds_trained: _Optional[int] = ..., updated: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., drift: _Optional[float] = ..., sessions_trained: _Optional[int] = ..., distance_from_identity: _Optional[float] = ..., probe_cosine_change: _Optional[float] = ...) -> None: ...

class DescribeUserResponse(_message.Message):
    __slots__ = ("user_id", "heads", "active_sessions")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    HEADS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    heads: _containers.RepeatedCompositeFieldContainer[HeadInfo]
    active_sessions: int
    def __init__(self, user_id: _Optional[str] = ..., heads: _Optional[_Iterable[_Union[HeadInfo, _Mapping]]] = ..., active_sessions: _Optional[int] = ...) -> None: ...
