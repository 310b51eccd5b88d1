import datetime

from facesearch_contract.v1 import calibration_pb2 as _calibration_pb2
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

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    DECISION_MATCH: _ClassVar[Decision]
    DECISION_POSSIBLE: _ClassVar[Decision]
    DECISION_UNKNOWN: _ClassVar[Decision]
DECISION_UNSPECIFIED: Decision
DECISION_MATCH: Decision
DECISION_POSSIBLE: Decision
DECISION_UNKNOWN: Decision

class Person(_message.Message):
    __slots__ = ("person_id", "display_name", "attributes", "reference_ids", "labelled_faces", "created_at", "updated_at")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_IDS_FIELD_NUMBER: _ClassVar[int]
    LABELLED_FACES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    person_id: str
    display_name: str
    attributes: _containers.ScalarMap[str, str]
    reference_ids: _containers.RepeatedScalarFieldContainer[str]
    labelled_faces: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, person_id: _Optional[str] = ..., display_name: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ..., reference_ids: _Optional[_Iterable[str]] = ..., labelled_faces: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class OperatingPoints(_message.Message):
    __slots__ = ("match_fpir", "possible_fpir", "min_match_quality")
    MATCH_FPIR_FIELD_NUMBER: _ClassVar[int]
    POSSIBLE_FPIR_FIELD_NUMBER: _ClassVar[int]
    MIN_MATCH_QUALITY_FIELD_NUMBER: _ClassVar[int]
    match_fpir: float
    possible_fpir: float
    min_match_quality: float
    def __init__(self, match_fpir: _Optional[float] = ..., possible_fpir: _Optional[float] = ..., min_match_quality: _Optional[float] = ...) -> None: ...

class IdentificationSettings(_message.Message):
    __slots__ = ("calibration", "operating_points", "vector_field")
    CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    OPERATING_POINTS_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_FIELD_NUMBER: _ClassVar[int]
    calibration: _calibration_pb2.ScoreCalibration
    operating_points: OperatingPoints
    vector_field: str
    def __init__(self, calibration: _Optional[_Union[_calibration_pb2.ScoreCalibration, _Mapping]] = ..., operating_points: _Optional[_Union[OperatingPoints, _Mapping]] = ..., vector_field: _Optional[str] = ...) -> None: ...

class ConfigureIdentificationRequest(_message.Message):
    __slots__ = ("collection", "settings")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    settings: IdentificationSettings
    def __init__(self, collection: _Optional[str] = ..., settings: _Optional[_Union[IdentificationSettings, _Mapping]] = ...) -> None: ...

class ConfigureIdentificationResponse(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: IdentificationSettings
    def __init__(self, settings: _Optional[_Union[IdentificationSettings, _Mapping]] = ...) -> None: ...

class GetIdentificationSettingsRequest(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    def __init__(self, collection: _Optional[str] = ...) -> None: ...

class GetIdentificationSettingsResponse(_message.Message):
    __slots__ = ("settings", "persons", "references")
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    PERSONS_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    settings: IdentificationSettings
    persons: int
    references: int
    def __init__(self, settings: _Optional[_Union[IdentificationSettings, _Mapping]] = ..., persons: _Optional[int] = ..., references: _Optional[int] = ...) -> None: ...

class EnrollPersonRequest(_message.Message):
    __slots__ = ("collection", "person")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    PERSON_FIELD_NUMBER: _ClassVar[int]
    collection: str
    person: Person
    def __init__(self, collection: _Optional[str] = ..., person: _Optional[_Union[Person, _Mapping]] = ...) -> None: ...

class EnrollPersonResponse(_message.Message):
    __slots__ = ("person",)
    PERSON_FIELD_NUMBER: _ClassVar[int]
    person: Person
    def __init__(self, person: _Optional[_Union[Person, _Mapping]] = ...) -> None: ...

class AddReferencesRequest(_message.Message):
    __slots__ = ("collection", "person_id", "reference_ids")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_IDS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    person_id: str
    reference_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, collection: _Optional[str] = ..., person_id: _Optional[str] = ..., reference_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class AddReferencesResponse(_message.Message):
    __slots__ = ("person",)
    PERSON_FIELD_NUMBER: _ClassVar[int]
    person: Person
    def __init__(self, person: _Optional[_Union[Person, _Mapping]] = ...) -> None: ...

class GetPersonRequest(_message.Message):
    __slots__ = ("collection", "person_id")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    collection: str
    person_id: str
    def __init__(self, collection: _Optional[str] = ..., person_id: _Optional[str] = ...) -> None: ...

class GetPersonResponse(_message.Message):
    __slots__ = ("person",)
    PERSON_FIELD_NUMBER: _ClassVar[int]
    person: Person
    def __init__(self, person: _Optional[_Union[Person, _Mapping]] = ...) -> None: ...

class ListPersonsRequest(_message.Message):
    __slots__ = ("collection", "page_size", "page_token")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    collection: str
    page_size: int
    page_token: str
    def __init__(self, collection: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListPersonsResponse(_message.Message):
    __slots__ = ("persons", "next_page_token", "total")
    PERSONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    persons: _containers.RepeatedCompositeFieldContainer[Person]
    next_page_token: str
    total: int
    def __init__(self, persons: _Optional[_Iterable[_Union[Person, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total: _Optional[int] = ...) -> None: ...

class UpdatePersonRequest(_message.Message):
    __slots__ = ("collection", "person_id", "display_name", "attributes", "remove_attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    REMOVE_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    collection: str
    person_id: str
    display_name: str
    attributes: _containers.ScalarMap[str, str]
    remove_attributes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, collection: _Optional[str] = ..., person_id: _Optional[str] = ..., display_name: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ..., remove_attributes: _Optional[_Iterable[str]] = ...) -> None: ...

class UpdatePersonResponse(_message.Message):
    __slots__ = ("person",)
    PERSON_FIELD_NUMBER: _ClassVar[int]
    person: Person
    def __init__(self, person: _Optional[_Union[Person, _Mapping]] = ...) -> None: ...

class MergePersonsRequest(_message.Message):
    __slots__ = ("collection", "source_person_id", "target_person_id")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    collection: str
    source_person_id: str
    target_person_id: str
    def __init__(self, collection: _Optional[str] = ..., source_person_id: _Optional[str] = ..., target_person_id: _Optional[str] = ...) -> None: ...

class MergePersonsResponse(_message.Message):
    __slots__ = ("person", "relabelled_faces")
    PERSON_FIELD_NUMBER: _ClassVar[int]
    RELABELLED_FACES_FIELD_NUMBER: _ClassVar[int]
    person: Person
    relabelled_faces: int
    def __init__(self, person: _Optional[_Union[Person, _Mapping]] = ..., relabelled_faces: _Optional[int] = ...) -> None: ...

class SplitPersonRequest(_message.Message):
    __slots__ = ("collection", "person_id", "new_person", "face_ids")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    NEW_PERSON_FIELD_NUMBER: _ClassVar[int]
    FACE_IDS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    person_id: str
    new_person: Person
    face_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, collection: _Optional[str] = ..., person_id: _Optional[str] = ..., new_person: _Optional[_Union[Person, _Mapping]] = ..., face_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class SplitPersonResponse(_message.Message):
    __slots__ = ("person", "new_person", "moved_faces")
    PERSON_FIELD_NUMBER: _ClassVar[int]
    NEW_PERSON_FIELD_NUMBER: _ClassVar[int]
    MOVED_FACES_FIELD_NUMBER: _ClassVar[int]
    person: Person
    new_person: Person
    moved_faces: int
    def __init__(self, person: _Optional[_Union[Person, _Mapping]] = ..., new_person: _Optional[_Union[Person, _Mapping]] = ..., moved_faces: _Optional[int] = ...) -> None: ...

class LabelFacesRequest(_message.Message):
    __slots__ = ("collection", "person_id", "face_ids", "relabel")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    FACE_IDS_FIELD_NUMBER: _ClassVar[int]
    RELABEL_FIELD_NUMBER: _ClassVar[int]
    collection: str
    person_id: str
    face_ids: _containers.RepeatedScalarFieldContainer[str]
    relabel: bool
    def __init__(self, collection: _Optional[str] = ..., person_id: _Optional[str] = ..., face_ids: _Optional[_Iterable[str]] = ..., relabel: _Optional[bool] = ...) -> None: ...

class LabelFacesResponse(_message.Message):
    __slots__ = ("labelled", "missing_ids")
    LABELLED_FIELD_NUMBER: _ClassVar[int]
    MISSING_IDS_FIELD_NUMBER: _ClassVar[int]
    labelled: int
    missing_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, labelled: _Optional[int] = ..., missing_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ForgetPersonRequest(_message.Message):
    __slots__ = ("collection", "person_id", "include_unlabelled_matches", "dry_run")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_UNLABELLED_MATCHES_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    collection: str
    person_id: str
    include_unlabelled_matches: bool
    dry_run: bool
    def __init__(self, collection: _Optional[str] = ..., person_id: _Optional[str] = ..., include_unlabelled_matches: _Optional[bool] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class ForgetPersonResponse(_message.Message):
    __slots__ = ("labelled_faces", "unlabelled_matches", "face_ids", "truncated", "dry_run")
    LABELLED_FACES_FIELD_NUMBER: _ClassVar[int]
    UNLABELLED_MATCHES_FIELD_NUMBER: _ClassVar[int]
    FACE_IDS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    labelled_faces: int
    unlabelled_matches: int
    face_ids: _containers.RepeatedScalarFieldContainer[str]
    truncated: bool
    dry_run: bool
    def __init__(self, labelled_faces: _Optional[int] = ..., unlabelled_matches: _Optional[int] = ..., face_ids: _Optional[_Iterable[str]] = ..., truncated: _Optional[bool] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class FaceProbe(_message.Message):
    __slots__ = ("vector", "quality", "ref", "model_id")
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    vector: _common_pb2.Vector
    quality: float
    ref: str
    model_id: str
    def __init__(self, vector: _Optional[_Union[_common_pb2.Vector, _Mapping]] = ..., quality: _Optional[float] = ..., ref: _Optional[str] = ..., model_id: _Optional[str] = ...) -> None: ...

class IdentifyRequest(_message.Message):
    __slots__ = ("collection", "faces", "max_candidates")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    MAX_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    collection: str
    faces: _containers.RepeatedCompositeFieldContainer[FaceProbe]
    max_candidates: int
    def __init__(self, collection: _Optional[str] = ..., faces: _Optional[_Iterable[_Union[FaceProbe, _Mapping]]] = ..., max_candidates: _Optional[int] = ...) -> None: ...

class PersonCandidate(_message.Message):
    __slots__ = ("person_id", "display_name", "score", "decision", "estimated_fpir", "reference_id")
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_FPIR_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    person_id: str
    display_name: str
    score: float
    decision: Decision
    estimated_fpir: float
    reference_id: str
    def __init__(self, person_id: _Optional[str] = ..., display_name: _Optional[str] = ..., score: _Optional[float] = ..., decision: _Optional[_Union[Decision, str]] = ..., estimated_fpir: _Optional[float] = ..., reference_id: _Optional[str] = ...) -> None: ...

class FaceIdentification(_message.Message):
    __slots__ = ("ref", "decision", "candidates", "match_threshold", "possible_threshold", "quality")
    REF_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    MATCH_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    POSSIBLE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    ref: str
    decision: Decision
    candidates: _containers.RepeatedCompositeFieldContainer[PersonCandidate]
    match_threshold: float
    possible_threshold: float
    quality: float
    def __init__(self, ref: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ..., candidates: _Optional[_Iterable[_Union[PersonCandidate, _Mapping]]] = ..., match_threshold: _Optional[float] = ..., possible_threshold: _Optional[float] = ..., quality: _Optional[float] = ...) -> None: ...

class IdentifyResponse(_message.Message):
    __slots__ = ("faces", "persons", "references_searched", "operating_points")
    FACES_FIELD_NUMBER: _ClassVar[int]
    PERSONS_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_SEARCHED_FIELD_NUMBER: _ClassVar[int]
    OPERATING_POINTS_FIELD_NUMBER: _ClassVar[int]
    faces: _containers.RepeatedCompositeFieldContainer[FaceIdentification]
    persons: int
    references_searched: int
    operating_points: OperatingPoints
    def __init__(self, faces: _Optional[_Iterable[_Union[FaceIdentification, _Mapping]]] = ..., persons: _Optional[int] = ..., references_searched: _Optional[int] = ..., operating_points: _Optional[_Union[OperatingPoints, _Mapping]] = ...) -> None: ...

class FaceCluster(_message.Message):
    __slots__ = ("cluster_id", "face_ids", "representative_id")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    FACE_IDS_FIELD_NUMBER: _ClassVar[int]
    REPRESENTATIVE_ID_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    face_ids: _containers.RepeatedScalarFieldContainer[str]
    representative_id: str
    def __init__(self, cluster_id: _Optional[str] = ..., face_ids: _Optional[_Iterable[str]] = ..., representative_id: _Optional[str] = ...) -> None: ...

class ListClustersRequest(_message.Message):
    __slots__ = ("collection", "min_size", "max_clusters", "recluster")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    MIN_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    RECLUSTER_FIELD_NUMBER: _ClassVar[int]
    collection: str
    min_size: int
    max_clusters: int
    recluster: bool
    def __init__(self, collection: _Optional[str] = ..., min_size: _Optional[int] = ..., max_clusters: _Optional[int] = ..., recluster: _Optional[bool] = ...) -> None: ...

class ListClustersResponse(_message.Message):
    __slots__ = ("clusters", "unlabelled_faces", "truncated", "new_faces", "departed_faces", "total_clusters")
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    UNLABELLED_FACES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    NEW_FACES_FIELD_NUMBER: _ClassVar[int]
    DEPARTED_FACES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    clusters: _containers.RepeatedCompositeFieldContainer[FaceCluster]
    unlabelled_faces: int
    truncated: bool
    new_faces: int
    departed_faces: int
    total_clusters: int
    def __init__(self, clusters: _Optional[_Iterable[_Union[FaceCluster, _Mapping]]] = ..., unlabelled_faces: _Optional[int] = ..., truncated: _Optional[bool] = ..., new_faces: _Optional[int] = ..., departed_faces: _Optional[int] = ..., total_clusters: _Optional[int] = ...) -> None: ...

class MergeClustersRequest(_message.Message):
    __slots__ = ("collection", "cluster_ids")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_IDS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    cluster_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, collection: _Optional[str] = ..., cluster_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class MergeClustersResponse(_message.Message):
    __slots__ = ("cluster",)
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    cluster: FaceCluster
    def __init__(self, cluster: _Optional[_Union[FaceCluster, _Mapping]] = ...) -> None: ...

class SplitClusterRequest(_message.Message):
    __slots__ = ("collection", "cluster_id", "face_ids")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    FACE_IDS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    cluster_id: str
    face_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, collection: _Optional[str] = ..., cluster_id: _Optional[str] = ..., face_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class SplitClusterResponse(_message.Message):
    __slots__ = ("kept", "split")
    KEPT_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    kept: FaceCluster
    split: FaceCluster
    def __init__(self, kept: _Optional[_Union[FaceCluster, _Mapping]] = ..., split: _Optional[_Union[FaceCluster, _Mapping]] = ...) -> None: ...
