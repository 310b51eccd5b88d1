import datetime

from facesearch_contract.v1 import common_pb2 as _common_pb2
from facesearch_contract.v1 import limits_pb2 as _limits_pb2
from facesearch_contract.v1 import retriever_pb2 as _retriever_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ShardRef(_message.Message):
    __slots__ = ("collection_uid", "shard")
    COLLECTION_UID_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    collection_uid: str
    shard: int
    def __init__(self, collection_uid: _Optional[str] = ..., shard: _Optional[int] = ...) -> None: ...

class ShardFilter(_message.Message):
    __slots__ = ("filter", "field_types")
    class FieldTypesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _retriever_pb2.FieldType
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_retriever_pb2.FieldType, str]] = ...) -> None: ...
    FILTER_FIELD_NUMBER: _ClassVar[int]
    FIELD_TYPES_FIELD_NUMBER: _ClassVar[int]
    filter: _common_pb2.Filter
    field_types: _containers.ScalarMap[str, _retriever_pb2.FieldType]
    def __init__(self, filter: _Optional[_Union[_common_pb2.Filter, _Mapping]] = ..., field_types: _Optional[_Mapping[str, _retriever_pb2.FieldType]] = ...) -> None: ...

class OpenShardRequest(_message.Message):
    __slots__ = ("ref", "vector_fields", "create")
    REF_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELDS_FIELD_NUMBER: _ClassVar[int]
    CREATE_FIELD_NUMBER: _ClassVar[int]
    ref: ShardRef
    vector_fields: _containers.RepeatedCompositeFieldContainer[_retriever_pb2.VectorFieldSpec]
    create: bool
    def __init__(self, ref: _Optional[_Union[ShardRef, _Mapping]] = ..., vector_fields: _Optional[_Iterable[_Union[_retriever_pb2.VectorFieldSpec, _Mapping]]] = ..., create: _Optional[bool] = ...) -> None: ...

class OpenShardResponse(_message.Message):
    __slots__ = ("shard",)
    SHARD_FIELD_NUMBER: _ClassVar[int]
    shard: ShardDescription
    def __init__(self, shard: _Optional[_Union[ShardDescription, _Mapping]] = ...) -> None: ...

class ShardUpsertRequest(_message.Message):
    __slots__ = ("ref", "points", "durable", "mode")
    REF_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    DURABLE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    ref: ShardRef
    points: _containers.RepeatedCompositeFieldContainer[_retriever_pb2.Point]
    durable: bool
    mode: _retriever_pb2.UpsertMode
    def __init__(self, ref: _Optional[_Union[ShardRef, _Mapping]] = ..., points: _Optional[_Iterable[_Union[_retriever_pb2.Point, _Mapping]]] = ..., durable: _Optional[bool] = ..., mode: _Optional[_Union[_retriever_pb2.UpsertMode, str]] = ...) -> None: ...

class ShardUpsertResponse(_message.Message):
    __slots__ = ("upserted", "replaced", "skipped")
    UPSERTED_FIELD_NUMBER: _ClassVar[int]
    REPLACED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    upserted: int
    replaced: int
    skipped: int
    def __init__(self, upserted: _Optional[int] = ..., replaced: _Optional[int] = ..., skipped: _Optional[int] = ...) -> None: ...

class AddShardFieldRequest(_message.Message):
    __slots__ = ("ref", "field")
    REF_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    ref: ShardRef
    field: _retriever_pb2.VectorFieldSpec
    def __init__(self, ref: _Optional[_Union[ShardRef, _Mapping]] = ..., field: _Optional[_Union[_retriever_pb2.VectorFieldSpec, _Mapping]] = ...) -> None: ...

class AddShardFieldResponse(_message.Message):
    __slots__ = ("added",)
    ADDED_FIELD_NUMBER: _ClassVar[int]
    added: bool
    def __init__(self, added: _Optional[bool] = ...) -> None: ...

class ShardDeleteRequest(_message.Message):
    __slots__ = ("ref", "ids", "filter")
    REF_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    ref: ShardRef
    ids: _retriever_pb2.IdList
    filter: ShardFilter
    def __init__(self, ref: _Optional[_Union[ShardRef, _Mapping]] = ..., ids: _Optional[_Union[_retriever_pb2.IdList, _Mapping]] = ..., filter: _Optional[_Union[ShardFilter, _Mapping]] = ...) -> None: ...

class ShardDeleteResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class ShardGetRequest(_message.Message):
    __slots__ = ("ref", "ids", "filter", "limit", "vector_field", "with_vectors")
    REF_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_FIELD_NUMBER: _ClassVar[int]
    WITH_VECTORS_FIELD_NUMBER: _ClassVar[int]
    ref: ShardRef
    ids: _containers.RepeatedScalarFieldContainer[str]
    filter: ShardFilter
    limit: int
    vector_field: str
    with_vectors: bool
    def __init__(self, ref: _Optional[_Union[ShardRef, _Mapping]] = ..., ids: _Optional[_Iterable[str]] = ..., filter: _Optional[_Union[ShardFilter, _Mapping]] = ..., limit: _Optional[int] = ..., vector_field: _Optional[str] = ..., with_vectors: _Optional[bool] = ...) -> None: ...

class ShardGetResponse(_message.Message):
    __slots__ = ("points",)
    POINTS_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[_retriever_pb2.Point]
    def __init__(self, points: _Optional[_Iterable[_Union[_retriever_pb2.Point, _Mapping]]] = ...) -> None: ...

class ShardScanRequest(_message.Message):
    __slots__ = ("ref", "after_position", "limit", "with_vectors")
    REF_FIELD_NUMBER: _ClassVar[int]
    AFTER_POSITION_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    WITH_VECTORS_FIELD_NUMBER: _ClassVar[int]
    ref: ShardRef
    after_position: int
    limit: int
    with_vectors: bool
    def __init__(self, ref: _Optional[_Union[ShardRef, _Mapping]] = ..., after_position: _Optional[int] = ..., limit: _Optional[int] = ..., with_vectors: _Optional[bool] = ...) -> None: ...

class ShardScanResponse(_message.Message):
    __slots__ = ("points", "last_position", "more")
    POINTS_FIELD_NUMBER: _ClassVar[int]
    LAST_POSITION_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[_retriever_pb2.Point]
    last_position: int
    more: bool
    def __init__(self, points: _Optional[_Iterable[_Union[_retriever_pb2.Point, _Mapping]]] = ..., last_position: _Optional[int] = ..., more: _Optional[bool] = ...) -> None: ...

class ShardSearchRequest(_message.Message):
    __slots__ = ("ref", "field", "queries", "k", "filter", "exclude_ids", "params", "with_metadata", "with_vectors")
    REF_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_IDS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    WITH_METADATA_FIELD_NUMBER: _ClassVar[int]
    WITH_VECTORS_FIELD_NUMBER: _ClassVar[int]
    ref: ShardRef
    field: str
    queries: _containers.RepeatedCompositeFieldContainer[_common_pb2.Vector]
    k: int
    filter: ShardFilter
    exclude_ids: _containers.RepeatedScalarFieldContainer[str]
    params: _retriever_pb2.SearchParams
    with_metadata: bool
    with_vectors: bool
    def __init__(self, ref: _Optional[_Union[ShardRef, _Mapping]] = ..., field: _Optional[str] = ..., queries: _Optional[_Iterable[_Union[_common_pb2.Vector, _Mapping]]] = ..., k: _Optional[int] = ..., filter: _Optional[_Union[ShardFilter, _Mapping]] = ..., exclude_ids: _Optional[_Iterable[str]] = ..., params: _Optional[_Union[_retriever_pb2.SearchParams, _Mapping]] = ..., with_metadata: _Optional[bool] = ..., with_vectors: _Optional[bool] = ...) -> None: ...

class ShardHit(_message.Message):
    __slots__ = ("score", "point")
    SCORE_FIELD_NUMBER: _ClassVar[int]
    POINT_FIELD_NUMBER: _ClassVar[int]
    score: float
    point: _retriever_pb2.Point
    def __init__(self, score: _Optional[float] = ..., point: _Optional[_Union[_retriever_pb2.Point, _Mapping]] = ...) -> None: ...

class ShardHits(_message.Message):
    __slots__ = ("hits",)
    HITS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[ShardHit]
    def __init__(self, hits: _Optional[_Iterable[_Union[ShardHit, _Mapping]]] = ...) -> None: ...

class ShardSearchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ShardHits]
    def __init__(self, results: _Optional[_Iterable[_Union[ShardHits, _Mapping]]] = ...) -> None: ...

class DescribeShardRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: ShardRef
    def __init__(self, ref: _Optional[_Union[ShardRef, _Mapping]] = ...) -> None: ...

class ShardDescription(_message.Message):
    __slots__ = ("ref", "points", "wal_entries", "last_snapshot", "field_stats", "memory_bytes", "disk_bytes")
    REF_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    WAL_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    LAST_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    FIELD_STATS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    DISK_BYTES_FIELD_NUMBER: _ClassVar[int]
    ref: ShardRef
    points: int
    wal_entries: int
    last_snapshot: _timestamp_pb2.Timestamp
    field_stats: _containers.RepeatedCompositeFieldContainer[_retriever_pb2.VectorFieldStats]
    memory_bytes: int
    disk_bytes: int
    def __init__(self, ref: _Optional[_Union[ShardRef, _Mapping]] = ..., points: _Optional[int] = ..., wal_entries: _Optional[int] = ..., last_snapshot: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., field_stats: _Optional[_Iterable[_Union[_retriever_pb2.VectorFieldStats, _Mapping]]] = ..., memory_bytes: _Optional[int] = ..., disk_bytes: _Optional[int] = ...) -> None: ...

class DescribeShardResponse(_message.Message):
    __slots__ = ("shard",)
    SHARD_FIELD_NUMBER: _ClassVar[int]
    shard: ShardDescription
    def __init__(self, shard: _Optional[_Union[ShardDescription, _Mapping]] = ...) -> None: ...

class SnapshotShardRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: ShardRef
    def __init__(self, ref: _Optional[_Union[ShardRef, _Mapping]] = ...) -> None: ...

class SnapshotShardResponse(_message.Message):
    __slots__ = ("sequence",)
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    def __init__(self, sequence: _Optional[int] = ...) -> None: ...

class DropShardRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: ShardRef
    def __init__(self, ref: _Optional[_Union[ShardRef, _Mapping]] = ...) -> None: ...

class DropShardResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListShardsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListShardsResponse(_message.Message):
    __slots__ = ("shards",)
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    shards: _containers.RepeatedCompositeFieldContainer[ShardRef]
    def __init__(self, shards: _Optional[_Iterable[_Union[ShardRef, _Mapping]]] = ...) -> None: ...
