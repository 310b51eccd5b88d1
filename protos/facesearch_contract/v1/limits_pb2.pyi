from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor
LIMITS_FIELD_NUMBER: _ClassVar[int]
limits: _descriptor.FieldDescriptor

class FieldLimits(_message.Message):
    __slots__ = ("max_items", "max_bytes", "min_value", "max_value", "max_total_bytes")
    MAX_ITEMS_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    MIN_VALUE_FIELD_NUMBER: _ClassVar[int]
    MAX_VALUE_FIELD_NUMBER: _ClassVar[int]
    MAX_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    max_items: int
    max_bytes: int
    min_value: int
    max_value: int
    max_total_bytes: int
    def __init__(self, max_items: _Optional[int] = ..., max_bytes: _Optional[int] = ..., min_value: _Optional[int] = ..., max_value: _Optional[int] = ..., max_total_bytes: _Optional[int] = ...) -> None: ...
