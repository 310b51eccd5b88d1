"""Request checks every service shares; each raises InvalidArgument naming the field."""

from __future__ import annotations

import re
from collections.abc import Sized

from facesearch_server.runtime.errors import InvalidArgument, ResourceExhausted

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def require(value: object, field: str) -> None:
    """The field must be set (non-empty string, bytes or list; non-zero message)."""
    if value is None or (isinstance(value, (str, bytes, Sized)) and len(value) == 0):
        raise InvalidArgument(field, "is required")


def quote(value: str, limit: int = 40) -> str:
    """A caller's value quoted in an error message: a short prefix, never unbounded input
    (a 10,000-character name echoed whole would not fit gRPC's trailer)."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value):,} characters)"


def require_name(value: str, field: str) -> None:
    require(value, field)
    if not NAME_RE.match(value):
        raise InvalidArgument(
            field,
            f"{quote(value)} is not a valid name: use 1-63 of a-z, 0-9, '_' and '-', "
            "starting with a letter or digit",
        )


def max_bytes(value: str, field: str, limit: int) -> None:
    if len(value.encode()) > limit:
        raise InvalidArgument(field, f"is {len(value.encode())} bytes; the limit is {limit}")


def batch_size(items: Sized, field: str, limit: int) -> None:
    """1..limit items: empty is INVALID_ARGUMENT, too many is RESOURCE_EXHAUSTED."""
    if len(items) == 0:
        raise InvalidArgument(field, "is empty: send at least one item")
    if len(items) > limit:
        raise ResourceExhausted(
            f"{field}: {len(items)} items is over this server's limit of {limit}; split the batch"
        )


def in_range(value: int | float, field: str, low: int | float, high: int | float) -> None:
    if not low <= value <= high:
        raise InvalidArgument(field, f"is {value}; it must be between {low} and {high}")
