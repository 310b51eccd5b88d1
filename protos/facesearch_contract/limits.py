"""Read the limits the contract declares on its fields (``protos/facesearch/v1/limits.proto``).

    from facesearch_contract.limits import max_items
    from facesearch_contract.v1 import retriever_pb2
    max_items(retriever_pb2.Query, "exclude_ids")  # 10000

Services and the SDK both call this, so a limit is written once, in the .proto, and documented
there beside the field.
"""

from __future__ import annotations

from functools import cache

from google.protobuf.message import Message

from facesearch_contract.v1 import limits_pb2


@cache
def field_limits(message: type[Message], field: str) -> limits_pb2.FieldLimits:
    """The ``(facesearch.v1.limits)`` option of ``message.field`` (all zero when none)."""
    descriptor = message.DESCRIPTOR.fields_by_name.get(field)
    if descriptor is None:
        raise KeyError(f"{message.DESCRIPTOR.full_name} has no field {field!r}")
    options = descriptor.GetOptions()
    if options.HasExtension(limits_pb2.limits):
        return options.Extensions[limits_pb2.limits]
    return limits_pb2.FieldLimits()


def max_items(message: type[Message], field: str) -> int:
    """The declared ``max_items`` of a field; KeyError when the contract declares none."""
    value = field_limits(message, field).max_items
    if not value:
        raise KeyError(f"{message.DESCRIPTOR.full_name}.{field} declares no max_items")
    return int(value)


def max_bytes(message: type[Message], field: str) -> int:
    """The declared ``max_bytes`` of a field; KeyError when the contract declares none."""
    value = field_limits(message, field).max_bytes
    if not value:
        raise KeyError(f"{message.DESCRIPTOR.full_name}.{field} declares no max_bytes")
    return int(value)


def max_total_bytes(message: type[Message], field: str) -> int:
    """The declared ``max_total_bytes`` of a repeated or map field; KeyError when none."""
    value = field_limits(message, field).max_total_bytes
    if not value:
        raise KeyError(f"{message.DESCRIPTOR.full_name}.{field} declares no max_total_bytes")
    return int(value)


def value_range(message: type[Message], field: str) -> tuple[int, int]:
    """The declared (min_value, max_value) of an integer field; KeyError when none."""
    limits = field_limits(message, field)
    if not limits.max_value:
        raise KeyError(f"{message.DESCRIPTOR.full_name}.{field} declares no value range")
    return int(limits.min_value), int(limits.max_value)
