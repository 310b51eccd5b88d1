"""Metadata and filters on untrusted input: arbitrary metadata values are stored or refused with
InvalidArgument (validation.check_metadata); arbitrary filters, built field by field, parsed
from arbitrary bytes or written as CLI ``key=value`` strings, compile or are refused with
InvalidArgument (filters.compile_filter), and a compiled filter answers True or False on every
stored record; never another exception."""

from __future__ import annotations

import math

import pytest
from google.protobuf.message import DecodeError
from hypothesis import event, given
from hypothesis import strategies as st

from facesearch import messages
from facesearch_contract.v1 import common_pb2 as cpb
from facesearch_server.retriever import filters
from facesearch_server.retriever import records as rec
from facesearch_server.retriever.validation import check_metadata
from facesearch_server.runtime.errors import InvalidArgument

from .conftest import fuzz

pytestmark = pytest.mark.slow

SCHEMA = {
    "person_id": rec.STRING,
    "media_id": rec.STRING,
    "time": rec.TIME,
    "age": rec.INT,
    "score": rec.DOUBLE,
    "ok": rec.BOOL,
    "tags": rec.STRING_LIST,
}
# Names of the schema, and others that are not in it (typos, empty, odd text).
names = st.one_of(st.sampled_from(sorted(SCHEMA)), st.text(max_size=40))
strings = st.text(max_size=64)
int64 = st.integers(-(2**63), 2**63 - 1)


@st.composite
def metadata_values(draw: st.DrawFn) -> cpb.MetadataValue:
    kind = draw(st.sampled_from(["string", "int", "double", "bool", "time", "list", "none"]))
    v = cpb.MetadataValue()
    if kind == "string":
        v.string_value = draw(strings)
    elif kind == "int":
        v.int_value = draw(int64)
    elif kind == "double":
        v.double_value = draw(st.floats(allow_nan=True, allow_infinity=True))
    elif kind == "bool":
        v.bool_value = draw(st.booleans())
    elif kind == "time":
        v.time_value.seconds = draw(int64)
        v.time_value.nanos = draw(st.integers(-(2**31), 2**31 - 1))
    elif kind == "list":
        v.string_list_value.values.extend(draw(st.lists(strings, max_size=4)))
    return v


@st.composite
def conditions(draw: st.DrawFn) -> cpb.FieldCondition:
    c = cpb.FieldCondition(field=draw(names), negate=draw(st.booleans()))
    which = draw(st.sampled_from(["equals", "in_set", "range", "exists", "unset"]))
    if which == "equals":
        c.equals.CopyFrom(draw(metadata_values()))
    elif which == "in_set":
        c.in_set.values.extend(draw(st.lists(metadata_values(), max_size=4)))
    elif which == "range":
        for op in draw(st.sets(st.sampled_from(["gte", "gt", "lte", "lt"]))):
            getattr(c.range, op).CopyFrom(draw(metadata_values()))
    elif which == "exists":
        c.exists = draw(st.booleans())
    return c


def filter_trees(depth: int = 2) -> st.SearchStrategy[cpb.Filter]:
    @st.composite
    def tree(draw: st.DrawFn) -> cpb.Filter:
        f = cpb.Filter(must=draw(st.lists(conditions(), max_size=3)))
        if depth > 0:
            f.any_of.extend(draw(st.lists(filter_trees(depth - 1), max_size=2)))
        return f

    return tree()


@st.composite
def records(draw: st.DrawFn) -> dict:
    """A stored record: metadata the upsert checks let through, as the shard keeps it."""
    meta = {name: draw(metadata_values()) for name in draw(st.sets(names, max_size=6))}
    new: dict[str, int] = {}
    try:
        check_metadata(meta, SCHEMA, new, "points[0].metadata")
    except InvalidArgument:
        meta = {}
    return rec.metadata_from_proto(meta)


def compiles_or_refuses(flt: cpb.Filter, stored: list[dict]) -> None:
    try:
        predicate = filters.compile_filter(flt, SCHEMA)
    except InvalidArgument as exc:
        assert str(exc).startswith("filter")
        event("filter refused")
        return
    event("filter compiled")
    if predicate is None:
        assert filters.is_empty(flt)
        return
    for record in stored:
        assert predicate(record) in (True, False)
    filters.equality_hints(flt)


@fuzz(600)
@given(
    meta=st.dictionaries(st.text(max_size=80), metadata_values(), max_size=8),
    schema_known=st.booleans(),
)
def test_arbitrary_metadata_is_stored_or_refused(meta: dict, schema_known: bool) -> None:
    new: dict[str, int] = {}
    try:
        check_metadata(meta, SCHEMA if schema_known else {}, new, "points[0].metadata")
    except InvalidArgument as exc:
        assert str(exc).startswith("points[0].metadata")
        event("metadata refused")
        return
    event("metadata stored")
    for value in meta.values():  # what is let through holds a finite double, if any
        assert not isinstance(rec.to_python(value), float) or math.isfinite(value.double_value)


@fuzz(600)
@given(flt=filter_trees(), stored=st.lists(records(), max_size=4))
def test_arbitrary_filters_compile_or_are_refused(flt: cpb.Filter, stored: list[dict]) -> None:
    compiles_or_refuses(flt, stored)


@fuzz(600)
@given(wire=st.binary(max_size=512), stored=st.lists(records(), max_size=3))
def test_filters_from_arbitrary_bytes_compile_or_are_refused(wire: bytes, stored: list) -> None:
    try:
        flt = cpb.Filter.FromString(wire)
    except DecodeError:
        return  # gRPC's deserialiser refuses it before any handler runs
    compiles_or_refuses(flt, stored)


@fuzz(600)
@given(items=st.lists(st.text(max_size=40), max_size=4), stored=st.lists(records(), max_size=3))
def test_cli_filter_strings_parse_compile_or_are_refused(items: list[str], stored: list) -> None:
    try:
        flt = messages.filter_from(messages.parse_where(items))
    except ValueError:
        return  # the CLI's usage error (exit 2), naming the bad item
    assert flt is not None
    compiles_or_refuses(flt, stored)
