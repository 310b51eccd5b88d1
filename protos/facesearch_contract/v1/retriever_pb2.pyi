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

class Metric(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    METRIC_UNSPECIFIED: _ClassVar[Metric]
    METRIC_INNER_PRODUCT: _ClassVar[Metric]
    METRIC_L2: _ClassVar[Metric]

class IndexKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INDEX_KIND_UNSPECIFIED: _ClassVar[IndexKind]
    INDEX_KIND_FLAT: _ClassVar[IndexKind]
    INDEX_KIND_IVF_PQ: _ClassVar[IndexKind]
    INDEX_KIND_HNSW: _ClassVar[IndexKind]

class TuningObjective(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TUNING_OBJECTIVE_UNSPECIFIED: _ClassVar[TuningObjective]
    TUNING_OBJECTIVE_RECALL_AT_K: _ClassVar[TuningObjective]
    TUNING_OBJECTIVE_ABOVE_THRESHOLD: _ClassVar[TuningObjective]

class FieldType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FIELD_TYPE_UNSPECIFIED: _ClassVar[FieldType]
    FIELD_TYPE_STRING: _ClassVar[FieldType]
    FIELD_TYPE_INT: _ClassVar[FieldType]
    FIELD_TYPE_DOUBLE: _ClassVar[FieldType]
    FIELD_TYPE_BOOL: _ClassVar[FieldType]
    FIELD_TYPE_TIME: _ClassVar[FieldType]
    FIELD_TYPE_STRING_LIST: _ClassVar[FieldType]

class MetadataSchemaMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    METADATA_SCHEMA_MODE_UNSPECIFIED: _ClassVar[MetadataSchemaMode]
    METADATA_SCHEMA_MODE_AUTO: _ClassVar[MetadataSchemaMode]
    METADATA_SCHEMA_MODE_DECLARED: _ClassVar[MetadataSchemaMode]

class BuildState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BUILD_STATE_UNSPECIFIED: _ClassVar[BuildState]
    BUILD_STATE_EXACT: _ClassVar[BuildState]
    BUILD_STATE_BUILDING: _ClassVar[BuildState]
    BUILD_STATE_READY: _ClassVar[BuildState]

class UpsertMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UPSERT_MODE_UNSPECIFIED: _ClassVar[UpsertMode]
    UPSERT_MODE_REPLACE: _ClassVar[UpsertMode]
    UPSERT_MODE_ADD_VECTORS: _ClassVar[UpsertMode]

class PersonAggregation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PERSON_AGGREGATION_UNSPECIFIED: _ClassVar[PersonAggregation]
    PERSON_AGGREGATION_MAX: _ClassVar[PersonAggregation]
    PERSON_AGGREGATION_MEAN: _ClassVar[PersonAggregation]

class Fusion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FUSION_UNSPECIFIED: _ClassVar[Fusion]
    FUSION_WEIGHTED_SUM: _ClassVar[Fusion]
    FUSION_RRF: _ClassVar[Fusion]
METRIC_UNSPECIFIED: Metric
METRIC_INNER_PRODUCT: Metric
METRIC_L2: Metric
INDEX_KIND_UNSPECIFIED: IndexKind
INDEX_KIND_FLAT: IndexKind
INDEX_KIND_IVF_PQ: IndexKind
INDEX_KIND_HNSW: IndexKind
TUNING_OBJECTIVE_UNSPECIFIED: TuningObjective
TUNING_OBJECTIVE_RECALL_AT_K: TuningObjective
TUNING_OBJECTIVE_ABOVE_THRESHOLD: TuningObjective
FIELD_TYPE_UNSPECIFIED: FieldType
FIELD_TYPE_STRING: FieldType
FIELD_TYPE_INT: FieldType
FIELD_TYPE_DOUBLE: FieldType
FIELD_TYPE_BOOL: FieldType
FIELD_TYPE_TIME: FieldType
FIELD_TYPE_STRING_LIST: FieldType
METADATA_SCHEMA_MODE_UNSPECIFIED: MetadataSchemaMode
METADATA_SCHEMA_MODE_AUTO: MetadataSchemaMode
METADATA_SCHEMA_MODE_DECLARED: MetadataSchemaMode
BUILD_STATE_UNSPECIFIED: BuildState
BUILD_STATE_EXACT: BuildState
BUILD_STATE_BUILDING: BuildState
BUILD_STATE_READY: BuildState
UPSERT_MODE_UNSPECIFIED: UpsertMode
UPSERT_MODE_REPLACE: UpsertMode
UPSERT_MODE_ADD_VECTORS: UpsertMode
PERSON_AGGREGATION_UNSPECIFIED: PersonAggregation
PERSON_AGGREGATION_MAX: PersonAggregation
PERSON_AGGREGATION_MEAN: PersonAggregation
FUSION_UNSPECIFIED: Fusion
FUSION_WEIGHTED_SUM: Fusion
FUSION_RRF: Fusion

class IndexParams(_message.Message):
    __slots__ = ("kind", "nlist", "pq_m", "nprobe", "hnsw_m", "ef_construction", "ef_search", "train_threshold", "target_recall", "tuning_objective", "min_score")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NLIST_FIELD_NUMBER: _ClassVar[int]
    PQ_M_FIELD_NUMBER: _ClassVar[int]
    NPROBE_FIELD_NUMBER: _ClassVar[int]
    HNSW_M_FIELD_NUMBER: _ClassVar[int]
    EF_CONSTRUCTION_FIELD_NUMBER: _ClassVar[int]
    EF_SEARCH_FIELD_NUMBER: _ClassVar[int]
    TRAIN_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    TARGET_RECALL_FIELD_NUMBER: _ClassVar[int]
    TUNING_OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    kind: IndexKind
    nlist: int
    pq_m: int
    nprobe: int
    hnsw_m: int
    ef_construction: int
    ef_search: int
    train_threshold: int
    target_recall: float
    tuning_objective: TuningObjective
    min_score: float
    def __init__(self, kind: _Optional[_Union[IndexKind, str]] = ..., nlist: _Optional[int] = ..., pq_m: _Optional[int] = ..., nprobe: _Optional[int] = ..., hnsw_m: _Optional[int] = ..., ef_construction: _Optional[int] = ..., ef_search: _Optional[int] = ..., train_threshold: _Optional[int] = ..., target_recall: _Optional[float] = ..., tuning_objective: _Optional[_Union[TuningObjective, str]] = ..., min_score: _Optional[float] = ...) -> None: ...

class VectorFieldSpec(_message.Message):
    __slots__ = ("name", "dimension", "metric", "model_id", "index")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    name: str
    dimension: int
    metric: Metric
    model_id: str
    index: IndexParams
    def __init__(self, name: _Optional[str] = ..., dimension: _Optional[int] = ..., metric: _Optional[_Union[Metric, str]] = ..., model_id: _Optional[str] = ..., index: _Optional[_Union[IndexParams, _Mapping]] = ...) -> None: ...

class MetadataFieldSpec(_message.Message):
    __slots__ = ("name", "type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: FieldType
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[FieldType, str]] = ...) -> None: ...

class CreateCollectionRequest(_message.Message):
    __slots__ = ("name", "vector_fields", "shard_count", "metadata_fields", "description", "metadata_schema", "max_metadata_fields", "media_roots")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELDS_FIELD_NUMBER: _ClassVar[int]
    SHARD_COUNT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELDS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    MAX_METADATA_FIELDS_FIELD_NUMBER: _ClassVar[int]
    MEDIA_ROOTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    vector_fields: _containers.RepeatedCompositeFieldContainer[VectorFieldSpec]
    shard_count: int
    metadata_fields: _containers.RepeatedCompositeFieldContainer[MetadataFieldSpec]
    description: str
    metadata_schema: MetadataSchemaMode
    max_metadata_fields: int
    media_roots: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., vector_fields: _Optional[_Iterable[_Union[VectorFieldSpec, _Mapping]]] = ..., shard_count: _Optional[int] = ..., metadata_fields: _Optional[_Iterable[_Union[MetadataFieldSpec, _Mapping]]] = ..., description: _Optional[str] = ..., metadata_schema: _Optional[_Union[MetadataSchemaMode, str]] = ..., max_metadata_fields: _Optional[int] = ..., media_roots: _Optional[_Iterable[str]] = ...) -> None: ...

class VectorFieldStats(_message.Message):
    __slots__ = ("name", "build_state", "build_progress", "effective_index", "tombstones", "index_bytes", "measured_recall", "vectors", "indexed_vectors", "pending_purge", "measured_above_threshold_recall", "points_without", "similarity_profile")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BUILD_STATE_FIELD_NUMBER: _ClassVar[int]
    BUILD_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_INDEX_FIELD_NUMBER: _ClassVar[int]
    TOMBSTONES_FIELD_NUMBER: _ClassVar[int]
    INDEX_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEASURED_RECALL_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    INDEXED_VECTORS_FIELD_NUMBER: _ClassVar[int]
    PENDING_PURGE_FIELD_NUMBER: _ClassVar[int]
    MEASURED_ABOVE_THRESHOLD_RECALL_FIELD_NUMBER: _ClassVar[int]
    POINTS_WITHOUT_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_PROFILE_FIELD_NUMBER: _ClassVar[int]
    name: str
    build_state: BuildState
    build_progress: float
    effective_index: IndexParams
    tombstones: int
    index_bytes: int
    measured_recall: float
    vectors: int
    indexed_vectors: int
    pending_purge: int
    measured_above_threshold_recall: float
    points_without: int
    similarity_profile: SimilarityProfile
    def __init__(self, name: _Optional[str] = ..., build_state: _Optional[_Union[BuildState, str]] = ..., build_progress: _Optional[float] = ..., effective_index: _Optional[_Union[IndexParams, _Mapping]] = ..., tombstones: _Optional[int] = ..., index_bytes: _Optional[int] = ..., measured_recall: _Optional[float] = ..., vectors: _Optional[int] = ..., indexed_vectors: _Optional[int] = ..., pending_purge: _Optional[int] = ..., measured_above_threshold_recall: _Optional[float] = ..., points_without: _Optional[int] = ..., similarity_profile: _Optional[_Union[SimilarityProfile, _Mapping]] = ...) -> None: ...

class SimilarityProfile(_message.Message):
    __slots__ = ("median", "p98", "pairs", "centroid")
    MEDIAN_FIELD_NUMBER: _ClassVar[int]
    P98_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    CENTROID_FIELD_NUMBER: _ClassVar[int]
    median: float
    p98: float
    pairs: int
    centroid: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, median: _Optional[float] = ..., p98: _Optional[float] = ..., pairs: _Optional[int] = ..., centroid: _Optional[_Iterable[float]] = ...) -> None: ...

class ShardStats(_message.Message):
    __slots__ = ("shard", "points", "location", "available", "wal_entries", "last_snapshot")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    WAL_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    LAST_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    shard: int
    points: int
    location: str
    available: bool
    wal_entries: int
    last_snapshot: _timestamp_pb2.Timestamp
    def __init__(self, shard: _Optional[int] = ..., points: _Optional[int] = ..., location: _Optional[str] = ..., available: _Optional[bool] = ..., wal_entries: _Optional[int] = ..., last_snapshot: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CollectionInfo(_message.Message):
    __slots__ = ("name", "vector_fields", "shard_count", "metadata_fields", "description", "aliases", "points", "field_stats", "shards", "created", "uid", "metadata_schema", "max_metadata_fields", "media_roots")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELDS_FIELD_NUMBER: _ClassVar[int]
    SHARD_COUNT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELDS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    FIELD_STATS_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    METADATA_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    MAX_METADATA_FIELDS_FIELD_NUMBER: _ClassVar[int]
    MEDIA_ROOTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    vector_fields: _containers.RepeatedCompositeFieldContainer[VectorFieldSpec]
    shard_count: int
    metadata_fields: _containers.RepeatedCompositeFieldContainer[MetadataFieldSpec]
    description: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    points: int
    field_stats: _containers.RepeatedCompositeFieldContainer[VectorFieldStats]
    shards: _containers.RepeatedCompositeFieldContainer[ShardStats]
    created: _timestamp_pb2.Timestamp
    uid: str
    metadata_schema: MetadataSchemaMode
    max_metadata_fields: int
    media_roots: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., vector_fields: _Optional[_Iterable[_Union[VectorFieldSpec, _Mapping]]] = ..., shard_count: _Optional[int] = ..., metadata_fields: _Optional[_Iterable[_Union[MetadataFieldSpec, _Mapping]]] = ..., description: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., points: _Optional[int] = ..., field_stats: _Optional[_Iterable[_Union[VectorFieldStats, _Mapping]]] = ..., shards: _Optional[_Iterable[_Union[ShardStats, _Mapping]]] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., uid: _Optional[str] = ..., metadata_schema: _Optional[_Union[MetadataSchemaMode, str]] = ..., max_metadata_fields: _Optional[int] = ..., media_roots: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateCollectionResponse(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: CollectionInfo
    def __init__(self, collection: _Optional[_Union[CollectionInfo, _Mapping]] = ...) -> None: ...

class AddMetadataFieldsRequest(_message.Message):
    __slots__ = ("collection", "fields")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    fields: _containers.RepeatedCompositeFieldContainer[MetadataFieldSpec]
    def __init__(self, collection: _Optional[str] = ..., fields: _Optional[_Iterable[_Union[MetadataFieldSpec, _Mapping]]] = ...) -> None: ...

class AddMetadataFieldsResponse(_message.Message):
    __slots__ = ("metadata_fields", "added")
    METADATA_FIELDS_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    metadata_fields: _containers.RepeatedCompositeFieldContainer[MetadataFieldSpec]
    added: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, metadata_fields: _Optional[_Iterable[_Union[MetadataFieldSpec, _Mapping]]] = ..., added: _Optional[_Iterable[str]] = ...) -> None: ...

class AddVectorFieldRequest(_message.Message):
    __slots__ = ("collection", "field")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    collection: str
    field: VectorFieldSpec
    def __init__(self, collection: _Optional[str] = ..., field: _Optional[_Union[VectorFieldSpec, _Mapping]] = ...) -> None: ...

class AddVectorFieldResponse(_message.Message):
    __slots__ = ("collection", "added")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    collection: CollectionInfo
    added: bool
    def __init__(self, collection: _Optional[_Union[CollectionInfo, _Mapping]] = ..., added: _Optional[bool] = ...) -> None: ...

class ListCollectionsRequest(_message.Message):
    __slots__ = ("page",)
    PAGE_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.PageRequest
    def __init__(self, page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListCollectionsResponse(_message.Message):
    __slots__ = ("collections", "page")
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    collections: _containers.RepeatedCompositeFieldContainer[CollectionInfo]
    page: _common_pb2.PageResponse
    def __init__(self, collections: _Optional[_Iterable[_Union[CollectionInfo, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class DescribeCollectionRequest(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    def __init__(self, collection: _Optional[str] = ...) -> None: ...

class DescribeCollectionResponse(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: CollectionInfo
    def __init__(self, collection: _Optional[_Union[CollectionInfo, _Mapping]] = ...) -> None: ...

class DropCollectionRequest(_message.Message):
    __slots__ = ("collection", "force")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    collection: str
    force: bool
    def __init__(self, collection: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class DropCollectionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetAliasRequest(_message.Message):
    __slots__ = ("alias", "collection", "allow_model_change")
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ALLOW_MODEL_CHANGE_FIELD_NUMBER: _ClassVar[int]
    alias: str
    collection: str
    allow_model_change: bool
    def __init__(self, alias: _Optional[str] = ..., collection: _Optional[str] = ..., allow_model_change: _Optional[bool] = ...) -> None: ...

class SetAliasResponse(_message.Message):
    __slots__ = ("previous_collection",)
    PREVIOUS_COLLECTION_FIELD_NUMBER: _ClassVar[int]
    previous_collection: str
    def __init__(self, previous_collection: _Optional[str] = ...) -> None: ...

class DeleteAliasRequest(_message.Message):
    __slots__ = ("alias",)
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    alias: str
    def __init__(self, alias: _Optional[str] = ...) -> None: ...

class DeleteAliasResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAliasesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AliasInfo(_message.Message):
    __slots__ = ("alias", "collection")
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    alias: str
    collection: str
    def __init__(self, alias: _Optional[str] = ..., collection: _Optional[str] = ...) -> None: ...

class ListAliasesResponse(_message.Message):
    __slots__ = ("aliases",)
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    aliases: _containers.RepeatedCompositeFieldContainer[AliasInfo]
    def __init__(self, aliases: _Optional[_Iterable[_Union[AliasInfo, _Mapping]]] = ...) -> None: ...

class Point(_message.Message):
    __slots__ = ("id", "vectors", "model_ids", "metadata")
    class VectorsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.Vector
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.Vector, _Mapping]] = ...) -> None: ...
    class ModelIdsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.MetadataValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.MetadataValue, _Mapping]] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    MODEL_IDS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    vectors: _containers.MessageMap[str, _common_pb2.Vector]
    model_ids: _containers.ScalarMap[str, str]
    metadata: _containers.MessageMap[str, _common_pb2.MetadataValue]
    def __init__(self, id: _Optional[str] = ..., vectors: _Optional[_Mapping[str, _common_pb2.Vector]] = ..., model_ids: _Optional[_Mapping[str, str]] = ..., metadata: _Optional[_Mapping[str, _common_pb2.MetadataValue]] = ...) -> None: ...

class UpsertRequest(_message.Message):
    __slots__ = ("collection", "points", "durable", "mode")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    DURABLE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    collection: str
    points: _containers.RepeatedCompositeFieldContainer[Point]
    durable: bool
    mode: UpsertMode
    def __init__(self, collection: _Optional[str] = ..., points: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., durable: _Optional[bool] = ..., mode: _Optional[_Union[UpsertMode, str]] = ...) -> None: ...

class UpsertResponse(_message.Message):
    __slots__ = ("upserted", "replaced", "skipped")
    UPSERTED_FIELD_NUMBER: _ClassVar[int]
    REPLACED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    upserted: int
    replaced: int
    skipped: int
    def __init__(self, upserted: _Optional[int] = ..., replaced: _Optional[int] = ..., skipped: _Optional[int] = ...) -> None: ...

class UpsertAck(_message.Message):
    __slots__ = ("sequence", "result", "error_code", "error_message")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    result: UpsertResponse
    error_code: int
    error_message: str
    def __init__(self, sequence: _Optional[int] = ..., result: _Optional[_Union[UpsertResponse, _Mapping]] = ..., error_code: _Optional[int] = ..., error_message: _Optional[str] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("collection", "ids", "with_vectors")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    WITH_VECTORS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    with_vectors: bool
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ..., with_vectors: _Optional[bool] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("points",)
    POINTS_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[Point]
    def __init__(self, points: _Optional[_Iterable[_Union[Point, _Mapping]]] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("collection", "ids", "filter", "person_id")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: IdList
    filter: _common_pb2.Filter
    person_id: str
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Union[IdList, _Mapping]] = ..., filter: _Optional[_Union[_common_pb2.Filter, _Mapping]] = ..., person_id: _Optional[str] = ...) -> None: ...

class IdList(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class QueryTerm(_message.Message):
    __slots__ = ("field", "vector", "point_id", "person_id", "model_id", "weight", "person_collection", "person_aggregation", "missing_similarity")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    POINT_ID_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    PERSON_COLLECTION_FIELD_NUMBER: _ClassVar[int]
    PERSON_AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    MISSING_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    field: str
    vector: _common_pb2.Vector
    point_id: str
    person_id: str
    model_id: str
    weight: float
    person_collection: str
    person_aggregation: PersonAggregation
    missing_similarity: float
    def __init__(self, field: _Optional[str] = ..., vector: _Optional[_Union[_common_pb2.Vector, _Mapping]] = ..., point_id: _Optional[str] = ..., person_id: _Optional[str] = ..., model_id: _Optional[str] = ..., weight: _Optional[float] = ..., person_collection: _Optional[str] = ..., person_aggregation: _Optional[_Union[PersonAggregation, str]] = ..., missing_similarity: _Optional[float] = ...) -> None: ...

class SearchParams(_message.Message):
    __slots__ = ("nprobe", "ef_search", "rescore_top", "exact")
    NPROBE_FIELD_NUMBER: _ClassVar[int]
    EF_SEARCH_FIELD_NUMBER: _ClassVar[int]
    RESCORE_TOP_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    nprobe: int
    ef_search: int
    rescore_top: int
    exact: bool
    def __init__(self, nprobe: _Optional[int] = ..., ef_search: _Optional[int] = ..., rescore_top: _Optional[int] = ..., exact: _Optional[bool] = ...) -> None: ...

class Query(_message.Message):
    __slots__ = ("terms", "k", "filter", "fusion", "exclude_ids", "min_score")
    TERMS_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    FUSION_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_IDS_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    terms: _containers.RepeatedCompositeFieldContainer[QueryTerm]
    k: int
    filter: _common_pb2.Filter
    fusion: Fusion
    exclude_ids: _containers.RepeatedScalarFieldContainer[str]
    min_score: float
    def __init__(self, terms: _Optional[_Iterable[_Union[QueryTerm, _Mapping]]] = ..., k: _Optional[int] = ..., filter: _Optional[_Union[_common_pb2.Filter, _Mapping]] = ..., fusion: _Optional[_Union[Fusion, str]] = ..., exclude_ids: _Optional[_Iterable[str]] = ..., min_score: _Optional[float] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("collection", "queries", "params", "with_metadata", "with_vectors", "allow_partial")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    WITH_METADATA_FIELD_NUMBER: _ClassVar[int]
    WITH_VECTORS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_PARTIAL_FIELD_NUMBER: _ClassVar[int]
    collection: str
    queries: _containers.RepeatedCompositeFieldContainer[Query]
    params: SearchParams
    with_metadata: bool
    with_vectors: bool
    allow_partial: bool
    def __init__(self, collection: _Optional[str] = ..., queries: _Optional[_Iterable[_Union[Query, _Mapping]]] = ..., params: _Optional[_Union[SearchParams, _Mapping]] = ..., with_metadata: _Optional[bool] = ..., with_vectors: _Optional[bool] = ..., allow_partial: _Optional[bool] = ...) -> None: ...

class ScoredPoint(_message.Message):
    __slots__ = ("id", "score", "term_scores", "metadata", "vectors")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.MetadataValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.MetadataValue, _Mapping]] = ...) -> None: ...
    class VectorsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.Vector
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.Vector, _Mapping]] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TERM_SCORES_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    id: str
    score: float
    term_scores: _containers.RepeatedScalarFieldContainer[float]
    metadata: _containers.MessageMap[str, _common_pb2.MetadataValue]
    vectors: _containers.MessageMap[str, _common_pb2.Vector]
    def __init__(self, id: _Optional[str] = ..., score: _Optional[float] = ..., term_scores: _Optional[_Iterable[float]] = ..., metadata: _Optional[_Mapping[str, _common_pb2.MetadataValue]] = ..., vectors: _Optional[_Mapping[str, _common_pb2.Vector]] = ...) -> None: ...

class QueryResult(_message.Message):
    __slots__ = ("hits",)
    HITS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[ScoredPoint]
    def __init__(self, hits: _Optional[_Iterable[_Union[ScoredPoint, _Mapping]]] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("results", "missing_shards", "partial_fields")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    MISSING_SHARDS_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELDS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[QueryResult]
    missing_shards: _containers.RepeatedScalarFieldContainer[int]
    partial_fields: _containers.RepeatedCompositeFieldContainer[FieldCoverage]
    def __init__(self, results: _Optional[_Iterable[_Union[QueryResult, _Mapping]]] = ..., missing_shards: _Optional[_Iterable[int]] = ..., partial_fields: _Optional[_Iterable[_Union[FieldCoverage, _Mapping]]] = ...) -> None: ...

class FieldCoverage(_message.Message):
    __slots__ = ("field", "points", "points_without")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    POINTS_WITHOUT_FIELD_NUMBER: _ClassVar[int]
    field: str
    points: int
    points_without: int
    def __init__(self, field: _Optional[str] = ..., points: _Optional[int] = ..., points_without: _Optional[int] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    def __init__(self, collection: _Optional[str] = ...) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("collections", "points", "memory_bytes", "disk_bytes", "collection")
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    DISK_BYTES_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collections: int
    points: int
    memory_bytes: int
    disk_bytes: int
    collection: CollectionInfo
    def __init__(self, collections: _Optional[int] = ..., points: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., disk_bytes: _Optional[int] = ..., collection: _Optional[_Union[CollectionInfo, _Mapping]] = ...) -> None: ...

class SnapshotRequest(_message.Message):
    __slots__ = ("collection", "wait")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    collection: str
    wait: bool
    def __init__(self, collection: _Optional[str] = ..., wait: _Optional[bool] = ...) -> None: ...

class SnapshotResponse(_message.Message):
    __slots__ = ("sequence", "started", "finished")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    started: _timestamp_pb2.Timestamp
    finished: _timestamp_pb2.Timestamp
    def __init__(self, sequence: _Optional[int] = ..., started: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ScanRequest(_message.Message):
    __slots__ = ("collection", "page", "with_vectors")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    WITH_VECTORS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    page: _common_pb2.PageRequest
    with_vectors: bool
    def __init__(self, collection: _Optional[str] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ..., with_vectors: _Optional[bool] = ...) -> None: ...

class ScanResponse(_message.Message):
    __slots__ = ("points", "page")
    POINTS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[Point]
    page: _common_pb2.PageResponse
    def __init__(self, points: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class AddMediaRootsRequest(_message.Message):
    __slots__ = ("collection", "media_roots")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    MEDIA_ROOTS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    media_roots: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, collection: _Optional[str] = ..., media_roots: _Optional[_Iterable[str]] = ...) -> None: ...

class AddMediaRootsResponse(_message.Message):
    __slots__ = ("media_roots",)
    MEDIA_ROOTS_FIELD_NUMBER: _ClassVar[int]
    media_roots: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, media_roots: _Optional[_Iterable[str]] = ...) -> None: ...
