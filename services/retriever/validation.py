"""Checks on retriever requests. Each batch is checked whole before anything is written, so a bad
point fails its batch and nothing of it is stored; errors name the field by its proto path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from facesearch_contract.limits import max_bytes, max_items, max_total_bytes, value_range
from facesearch_contract.v1 import common_pb2 as cpb
from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever import index_build
from facesearch_server.retriever import records as rec
from facesearch_server.runtime.errors import FailedPrecondition, InvalidArgument
from facesearch_server.runtime.validation import batch_size, quote, require, require_name

FIELD_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# The caller-facing limits, as the contract declares them on their fields (retriever.proto).
_, MAX_DIM = value_range(pb.VectorFieldSpec, "dimension")
_, MAX_NLIST = value_range(pb.IndexParams, "nlist")
_, MAX_SHARDS = value_range(pb.CreateCollectionRequest, "shard_count")
MAX_ID_BYTES = max_bytes(pb.Point, "id")
MAX_KEY_BYTES = max_bytes(pb.MetadataFieldSpec, "name")
MAX_META_KEYS = max_items(pb.Point, "metadata")
MAX_META_BYTES = max_total_bytes(pb.Point, "metadata")
MAX_STRING_BYTES = max_bytes(cpb.MetadataValue, "string_value")
MAX_LIST_STRING_BYTES = max_bytes(cpb.StringList, "values")
MAX_TERMS = max_items(pb.Query, "terms")
MAX_EXCLUDE = max_items(pb.Query, "exclude_ids")
MAX_EXCLUDE_ID_BYTES = max_bytes(pb.Query, "exclude_ids")
MAX_POINT_ID_BYTES = max_bytes(pb.QueryTerm, "point_id")
_, MAX_RESCORE = value_range(pb.SearchParams, "rescore_top")
MAX_DELETE_IDS = max_items(pb.IdList, "ids")
MAX_DELETE_ID_BYTES = max_bytes(pb.IdList, "ids")
MAX_GET_IDS = max_items(pb.GetRequest, "ids")
MAX_GET_ID_BYTES = max_bytes(pb.GetRequest, "ids")
_, CEILING_METADATA_FIELDS = value_range(pb.CreateCollectionRequest, "max_metadata_fields")
MAX_ADD_FIELDS = max_items(pb.AddMetadataFieldsRequest, "fields")
# A collection's max_metadata_fields when its creator set none: room for every field a real
# archive declares, while a writer minting keys per record is stopped within a few batches.
DEFAULT_METADATA_FIELDS = 256
# Names quoted in one message: a few say what is wrong; thousands would not fit gRPC's trailer.
NAMES_SHOWN = 5
# Ceilings of the operator's settings (collection.Limits): a server may allow less, never more.
_, CEILING_K = value_range(pb.Query, "k")
CEILING_UPSERT_BATCH = max_items(pb.UpsertRequest, "points")
CEILING_SEARCH_BATCH = max_items(pb.SearchRequest, "queries")
# The most vector fields AddVectorField lets a collection reach (retriever.proto,
# AddVectorFieldRequest.field): each is an index per shard, searched and snapshotted.
MAX_VECTOR_FIELDS = 32


def quote_names(names: Iterable[str], shown: int = NAMES_SHOWN) -> str:
    """The first ``shown`` names, each quoted (bounded), and how many more there are."""
    items = list(names)
    head = ", ".join(quote(n, MAX_KEY_BYTES) for n in items[:shown])
    rest = len(items) - shown
    return f"{head} and {rest:,} more" if rest > 0 else head


def type_name(ftype: int) -> str:
    return rec.TYPE_NAMES.get(ftype, f"unknown type {ftype}")


def check_field_specs(specs: Sequence[pb.MetadataFieldSpec], path: str) -> dict[str, int]:
    """Declared metadata fields (at create or AddMetadataFields): name -> type. The same field
    given twice with one type is accepted once."""
    declared: dict[str, int] = {}
    for i, m in enumerate(specs):
        fpath = f"{path}[{i}]"
        if not m.name or len(m.name.encode()) > MAX_KEY_BYTES:
            raise InvalidArgument(f"{fpath}.name", f"must be 1..{MAX_KEY_BYTES} bytes")
        if m.type not in rec.TYPE_NAMES:
            raise InvalidArgument(f"{fpath}.type", "set a field type (string, int, double, ...)")
        builtin = rec.BUILTIN_FIELDS.get(m.name)
        if builtin is not None and builtin != m.type:
            raise InvalidArgument(
                f"{fpath}.type", f"{quote(m.name)} is built in as {rec.TYPE_NAMES[builtin]}"
            )
        if declared.get(m.name, m.type) != m.type:
            raise InvalidArgument(f"{fpath}.name", f"{quote(m.name)} is declared twice")
        declared[m.name] = m.type
    return declared


def schema_room(
    collection: str, schema: Mapping[str, int], fresh: Mapping[str, int], cap: int, outcome: str
) -> None:
    """FAILED_PRECONDITION when adding ``fresh`` would take ``schema`` past ``cap`` fields."""
    if len(schema) + len(fresh) <= cap:
        return
    raise FailedPrecondition(
        f"collection {quote(collection)} may hold {cap:,} metadata fields "
        f"(max_metadata_fields) and has {len(schema):,}; the {len(fresh):,} new keys "
        f"{quote_names(sorted(fresh))} would pass that, so {outcome}. Keep values that vary "
        "per record in metadata values, not in keys; or create a collection with a larger "
        f"max_metadata_fields (at most {CEILING_METADATA_FIELDS:,})"
    )


def check_tuning_objective(p: pb.IndexParams, metric: int, path: str) -> None:
    """tuning_objective and min_score (retriever.proto, IndexParams)."""
    if p.tuning_objective not in pb.TuningObjective.values():
        raise InvalidArgument(
            f"{path}.tuning_objective", f"unknown tuning objective {p.tuning_objective}"
        )
    if not p.HasField("min_score"):
        if p.tuning_objective == pb.TUNING_OBJECTIVE_ABOVE_THRESHOLD:
            raise InvalidArgument(
                f"{path}.min_score",
                "is required by TUNING_OBJECTIVE_ABOVE_THRESHOLD: set the score at or above "
                "which a result counts (for a face field, the model's match threshold)",
            )
        return
    if p.kind in (pb.INDEX_KIND_UNSPECIFIED, pb.INDEX_KIND_FLAT):
        raise InvalidArgument(
            f"{path}.min_score",
            "applies to IVF_PQ and HNSW only: exact search has no width to tune",
        )
    score = p.min_score
    if metric == pb.METRIC_L2:
        ok, rule = math.isfinite(score) and score <= 0, "at most 0 (a negated squared distance)"
    else:
        ok, rule = -1.0 <= score <= 1.0, "in [-1, 1] (a cosine of unit vectors)"  # NaN fails
    if not ok:
        raise InvalidArgument(f"{path}.min_score", f"is {score}; it must be {rule}")


def check_vector_field(f: pb.VectorFieldSpec, path: str) -> None:
    """One vector field's spec (CreateCollection, AddVectorField), its defaults resolved in
    place as the catalog stores them."""
    if not FIELD_RE.match(f.name):
        raise InvalidArgument(
            f"{path}.name", f"{f.name!r} is not a valid field name: use [a-z][a-z0-9_]{{0,31}}"
        )
    if not 1 <= f.dimension <= MAX_DIM:
        raise InvalidArgument(f"{path}.dimension", f"is {f.dimension}; it must be 1..{MAX_DIM:,}")
    require(f.model_id, f"{path}.model_id")
    if f.metric not in pb.Metric.values():
        raise InvalidArgument(f"{path}.metric", f"unknown metric {f.metric}")
    if f.metric == pb.METRIC_UNSPECIFIED:
        f.metric = pb.METRIC_INNER_PRODUCT
    if f.index.kind not in pb.IndexKind.values():
        raise InvalidArgument(f"{path}.index.kind", f"unknown index kind {f.index.kind}")
    if not 0.0 <= f.index.target_recall <= 1.0:  # NaN fails this too
        raise InvalidArgument(
            f"{path}.index.target_recall",
            f"is {f.index.target_recall}; it must be in (0, 1], or 0 for the default 0.95",
        )
    check_tuning_objective(f.index, f.metric, f"{path}.index")
    f.index.CopyFrom(index_build.resolve_params(f.dimension, f.index))
    if f.index.kind == pb.INDEX_KIND_IVF_PQ:
        if f.dimension % f.index.pq_m:
            raise InvalidArgument(
                f"{path}.index.pq_m",
                f"{f.index.pq_m} does not divide the dimension {f.dimension}",
            )
        if f.index.nlist > MAX_NLIST:
            raise InvalidArgument(
                f"{path}.index.nlist", f"is {f.index.nlist}; at most {MAX_NLIST:,}"
            )


def check_create(
    req: pb.CreateCollectionRequest, fixed_shards: int | None
) -> pb.CreateCollectionRequest:
    """The request with defaults resolved, as the catalog stores it."""
    require_name(req.name, "name")
    require(req.vector_fields, "vector_fields")
    out = pb.CreateCollectionRequest()
    out.CopyFrom(req)
    seen: set[str] = set()
    for i, f in enumerate(out.vector_fields):
        path = f"vector_fields[{i}]"
        check_vector_field(f, path)
        if f.name in seen:
            raise InvalidArgument(f"{path}.name", f"field {f.name!r} is declared twice")
        seen.add(f.name)
    if fixed_shards is not None:
        if out.shard_count not in (0, fixed_shards):
            raise InvalidArgument(
                "shard_count",
                f"is {out.shard_count}, but this router serves {fixed_shards} shard servers: "
                f"leave it 0 or set {fixed_shards}",
            )
        out.shard_count = fixed_shards
    else:
        out.shard_count = out.shard_count or 1
        if not 1 <= out.shard_count <= MAX_SHARDS:
            raise InvalidArgument(
                "shard_count", f"is {out.shard_count}; it must be 1..{MAX_SHARDS}"
            )
    if out.metadata_schema not in pb.MetadataSchemaMode.values():
        raise InvalidArgument("metadata_schema", f"unknown mode {out.metadata_schema}")
    if out.metadata_schema == pb.METADATA_SCHEMA_MODE_UNSPECIFIED:
        out.metadata_schema = pb.METADATA_SCHEMA_MODE_AUTO
    out.max_metadata_fields = out.max_metadata_fields or DEFAULT_METADATA_FIELDS
    if out.max_metadata_fields > CEILING_METADATA_FIELDS:
        raise InvalidArgument(
            "max_metadata_fields",
            f"is {out.max_metadata_fields:,}; at most {CEILING_METADATA_FIELDS:,} (0 = "
            f"{DEFAULT_METADATA_FIELDS})",
        )
    declared = rec.BUILTIN_FIELDS | check_field_specs(out.metadata_fields, "metadata_fields")
    if len(declared) > out.max_metadata_fields:
        raise InvalidArgument(
            "metadata_fields",
            f"declares {len(declared):,} fields with the {len(rec.BUILTIN_FIELDS)} built-in ones; "
            f"max_metadata_fields is {out.max_metadata_fields:,}: raise it or declare fewer",
        )
    return out


def check_id(value: str, path: str, limit: int = MAX_ID_BYTES) -> None:
    """A record id: set, and at most ``limit`` bytes (the id field's declared max_bytes)."""
    require(value, path)
    if len(value.encode()) > limit:
        raise InvalidArgument(
            path, f"is {len(value.encode())} bytes; ids are at most {limit} bytes"
        )


def check_vector(values: Sequence[float], dim: int, path: str) -> np.ndarray:
    if len(values) != dim:
        raise InvalidArgument(path, f"has {len(values)} values; this field's dimension is {dim}")
    arr = np.fromiter(values, dtype=np.float32, count=dim)
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise InvalidArgument(path, f"value [{bad}] is {arr[bad]}: NaN and Inf are refused")
    return arr


def check_model(given: str, spec: pb.VectorFieldSpec, path: str) -> None:
    if not given:
        raise InvalidArgument(
            path, f"name the model of the {spec.name!r} vector (this field holds {spec.model_id!r})"
        )
    if given != spec.model_id:
        raise InvalidArgument(
            path,
            f"vectors of model {given!r} cannot go in field {spec.name!r}, bound to "
            f"{spec.model_id!r}: re-embed with that model or use a collection for {given!r}",
        )


def check_point_vectors(p: pb.Point, fields: Mapping[str, pb.VectorFieldSpec], path: str) -> None:
    """Each vector of ``p``: a field of the collection, its dimension, finite, its model."""
    for name, vec in p.vectors.items():
        spec = fields.get(name)
        if spec is None:
            raise InvalidArgument(
                f"{path}.vectors[{quote(name)}]",
                f"unknown vector field {quote(name)}; the collection has "
                f"{quote_names(sorted(fields))}",
            )
        check_vector(vec.values, spec.dimension, f"{path}.vectors[{name}]")
        check_model(p.model_ids.get(name, ""), spec, f"{path}.model_ids[{name}]")
    for name in p.model_ids:
        if name not in p.vectors:
            raise InvalidArgument(f"{path}.model_ids[{name}]", "names a field with no vector")


def check_points(
    points: list[pb.Point],
    fields: Mapping[str, pb.VectorFieldSpec],
    primary: str,
    schema: Mapping[str, int],
    max_batch: int,
    declared_only: bool = False,
) -> dict[str, int]:
    """Validate an upsert batch; returns metadata fields seen for the first time, typed (none
    when ``declared_only``: an undeclared key is refused)."""
    batch_size(points, "points", max_batch)
    seen: dict[str, int] = {}
    new_fields: dict[str, int] = {}
    for i, p in enumerate(points):
        path = f"points[{i}]"
        check_id(p.id, f"{path}.id")
        if p.id in seen:
            raise InvalidArgument(
                f"{path}.id", f"duplicate id {p.id!r} (also points[{seen[p.id]}]) in one batch"
            )
        seen[p.id] = i
        if primary not in p.vectors:
            raise InvalidArgument(f"{path}.vectors", f"the primary field {primary!r} is required")
        check_point_vectors(p, fields, path)
        check_metadata(p.metadata, schema, new_fields, f"{path}.metadata", declared_only)
    return new_fields


def check_vector_additions(
    points: list[pb.Point], fields: Mapping[str, pb.VectorFieldSpec], max_batch: int
) -> None:
    """Validate an ADD_VECTORS batch (UpsertMode): ids and vectors as an upsert's, but no
    metadata (nothing of the stored point but its missing vectors may change) and no primary
    field required."""
    batch_size(points, "points", max_batch)
    seen: dict[str, int] = {}
    for i, p in enumerate(points):
        path = f"points[{i}]"
        check_id(p.id, f"{path}.id")
        if p.id in seen:
            raise InvalidArgument(
                f"{path}.id", f"duplicate id {p.id!r} (also points[{seen[p.id]}]) in one batch"
            )
        seen[p.id] = i
        if p.metadata:
            raise InvalidArgument(
                f"{path}.metadata",
                "must be empty with mode ADD_VECTORS (it only adds vectors to stored points); "
                "upsert with mode REPLACE to change metadata",
            )
        if not p.vectors:
            raise InvalidArgument(f"{path}.vectors", "is empty: give the vectors to add")
        check_point_vectors(p, fields, path)


def check_metadata(
    meta: Mapping[str, cpb.MetadataValue],
    schema: Mapping[str, int],
    new: dict[str, int],
    path: str,
    declared_only: bool = False,
) -> None:
    if len(meta) > MAX_META_KEYS:
        raise InvalidArgument(path, f"has {len(meta)} keys; at most {MAX_META_KEYS}")
    total = 0
    for key, value in meta.items():
        fpath = f"{path}[{key}]"
        if not key or len(key.encode()) > MAX_KEY_BYTES:
            raise InvalidArgument(f"{path}[{quote(key)}]", f"keys are 1..{MAX_KEY_BYTES} bytes")
        kind = rec.kind_type(value)
        if kind is None:
            raise InvalidArgument(fpath, "has no value: set one kind")
        want = schema.get(key, new.get(key))
        if want is None and declared_only:
            raise InvalidArgument(
                fpath,
                f"{quote(key)} is not a metadata field of this collection (its metadata_schema "
                "is DECLARED): declare it with AddMetadataFields first, or fix the key",
            )
        if want is None:
            new[key] = kind
        elif want != kind and not (want == rec.DOUBLE and kind == rec.INT):
            raise InvalidArgument(
                fpath,
                f"is a {rec.TYPE_NAMES[kind]}, but field {key!r} holds {rec.TYPE_NAMES[want]} "
                "values in this collection",
            )
        size = value.ByteSize() + len(key)
        strings, limit = (
            ([value.string_value], MAX_STRING_BYTES)
            if kind == rec.STRING
            else (list(value.string_list_value.values), MAX_LIST_STRING_BYTES)
            if kind == rec.STRING_LIST
            else ([], 0)
        )
        for s in strings:
            if len(s.encode()) > limit:
                raise InvalidArgument(fpath, f"strings are at most {limit:,} bytes")
        if kind == rec.DOUBLE and not math.isfinite(value.double_value):
            raise InvalidArgument(fpath, "NaN and Inf are refused")
        total += size
    if total > MAX_META_BYTES:
        raise InvalidArgument(path, f"is {total:,} bytes; at most {MAX_META_BYTES:,} per point")
