"""Metadata values between their proto form and the typed Python values shards keep.

Shards hold metadata as plain Python values so filters run without touching protobuf. A time
is a ``TimeNs`` (an int subclass) so a filter can tell a time field from an int field.
"""

from __future__ import annotations

from typing import Any

from facesearch_contract.v1 import common_pb2 as cpb
from facesearch_contract.v1 import retriever_pb2 as pb

STRING = pb.FIELD_TYPE_STRING
INT = pb.FIELD_TYPE_INT
DOUBLE = pb.FIELD_TYPE_DOUBLE
BOOL = pb.FIELD_TYPE_BOOL
TIME = pb.FIELD_TYPE_TIME
STRING_LIST = pb.FIELD_TYPE_STRING_LIST

TYPE_NAMES = {
    STRING: "string",
    INT: "int",
    DOUBLE: "double",
    BOOL: "bool",
    TIME: "time",
    STRING_LIST: "string list",
}
_KIND_TYPES = {
    "string_value": STRING,
    "int_value": INT,
    "double_value": DOUBLE,
    "bool_value": BOOL,
    "time_value": TIME,
    "string_list_value": STRING_LIST,
}
# Always declared, so "forget this person" and time ranges work on an empty collection.
BUILTIN_FIELDS = {"person_id": STRING, "media_id": STRING, "source": STRING, "time": TIME}


class TimeNs(int):
    """Nanoseconds since the Unix epoch."""


Metadata = dict[str, Any]


def kind_type(value: cpb.MetadataValue) -> int | None:
    """The FieldType a value carries, None when no kind is set."""
    kind = value.WhichOneof("kind")
    return _KIND_TYPES.get(kind) if kind else None


def to_python(value: cpb.MetadataValue) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "time_value":
        t = value.time_value
        return TimeNs(t.seconds * 1_000_000_000 + t.nanos)
    if kind == "string_list_value":
        return tuple(value.string_list_value.values)
    return getattr(value, kind) if kind else None


def to_proto(value: Any, out: cpb.MetadataValue) -> None:
    if isinstance(value, TimeNs):
        out.time_value.seconds, out.time_value.nanos = divmod(int(value), 1_000_000_000)
    elif isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int):
        out.int_value = value
    elif isinstance(value, float):
        out.double_value = value
    elif isinstance(value, tuple):
        out.string_list_value.values.extend(value)
    else:
        out.string_value = value


def metadata_from_proto(fields: Any) -> Metadata:
    return {k: to_python(v) for k, v in fields.items()}


def metadata_to_proto(meta: Metadata, out: Any) -> None:
    for key, value in meta.items():
        to_proto(value, out[key])
