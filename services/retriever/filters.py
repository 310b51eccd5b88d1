"""Metadata filters: a ``Filter`` proto compiled once, against the collection's typed schema,
into a predicate over a record's metadata.

Compiling up front is what lets a typo (unknown field) or a value of the wrong type fail the
request with INVALID_ARGUMENT naming the field, instead of silently matching nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from facesearch_contract.limits import max_items
from facesearch_contract.v1 import common_pb2 as cpb
from facesearch_server.retriever import records as rec
from facesearch_server.retriever.validation import quote_names
from facesearch_server.runtime.errors import InvalidArgument
from facesearch_server.runtime.validation import quote

Predicate = Callable[[rec.Metadata], bool]
MAX_IN_SET = max_items(cpb.MetadataValueList, "values")
_ORDERED = (rec.INT, rec.DOUBLE, rec.TIME)


def is_empty(flt: cpb.Filter | None) -> bool:
    return flt is None or (len(flt.must) == 0 and len(flt.any_of) == 0)


def compile_filter(
    flt: cpb.Filter | None, schema: Mapping[str, int], path: str = "filter"
) -> Predicate | None:
    """The predicate, or None when the filter matches everything."""
    if is_empty(flt):
        return None
    assert flt is not None
    conds = [_condition(c, schema, f"{path}.must[{i}]") for i, c in enumerate(flt.must)]
    groups = [
        compile_filter(g, schema, f"{path}.any_of[{i}]") or (lambda m: True)
        for i, g in enumerate(flt.any_of)
    ]

    def match(meta: rec.Metadata) -> bool:
        if not all(c(meta) for c in conds):
            return False
        return not groups or any(g(meta) for g in groups)

    types = {name: schema[name] for name in named_fields(flt)}
    return CompiledFilter(match, equality_hints(flt), types)


class CompiledFilter:
    """A predicate plus the equality hints an index can use to skip most records, and the
    types it was compiled against (so a shard server can compile the same filter again)."""

    def __init__(
        self,
        fn: Predicate,
        hints: list[tuple[str, frozenset[str]]],
        types: Mapping[str, int] | None = None,
    ) -> None:
        self.fn = fn
        self.hints = hints
        self.types = dict(types or {})

    def __call__(self, meta: rec.Metadata) -> bool:
        return self.fn(meta)


def _value(v: cpb.MetadataValue, ftype: int, field: str, path: str) -> Any:
    """A filter operand as the Python value stored records hold for this field type."""
    kind = rec.kind_type(v)
    want = rec.STRING if ftype == rec.STRING_LIST else ftype
    if kind == rec.INT and want == rec.DOUBLE:
        return float(v.int_value)
    if kind != want:
        got = rec.TYPE_NAMES.get(kind, "no value") if kind else "no value"
        raise InvalidArgument(
            path,
            f"field {field!r} is of type {rec.TYPE_NAMES[ftype]}; "
            f"a value of type {rec.TYPE_NAMES[want]} is needed, got {got}",
        )
    return rec.to_python(v)


def _condition(c: cpb.FieldCondition, schema: Mapping[str, int], path: str) -> Predicate:
    name = c.field
    if not name:
        raise InvalidArgument(f"{path}.field", "is required")
    if name not in schema:
        # A few known names help with a typo; every one of a large schema would not fit.
        raise InvalidArgument(
            f"{path}.field",
            f"unknown metadata field {quote(name)}: this collection has no such field "
            f"(of its {len(schema):,}: {quote_names(sorted(schema))}); declare it "
            "(AddMetadataFields) or fix the name",
        )
    ftype = schema[name]
    which = c.WhichOneof("match")
    test: Predicate
    if which == "equals":
        want = _value(c.equals, ftype, name, f"{path}.equals")
        if ftype == rec.STRING_LIST:
            test = lambda m: want in m.get(name, ())  # noqa: E731
        else:
            test = lambda m: name in m and m[name] == want  # noqa: E731
    elif which == "in_set":
        values = c.in_set.values
        if not values:
            raise InvalidArgument(f"{path}.in_set", "is empty: give at least one value")
        if len(values) > MAX_IN_SET:
            raise InvalidArgument(
                f"{path}.in_set", f"has {len(values):,} values; at most {MAX_IN_SET:,}"
            )
        wanted = frozenset(
            _value(v, ftype, name, f"{path}.in_set.values[{i}]") for i, v in enumerate(values)
        )
        if ftype == rec.STRING_LIST:
            test = lambda m: not wanted.isdisjoint(m.get(name, ()))  # noqa: E731
        else:
            test = lambda m: name in m and m[name] in wanted  # noqa: E731
    elif which == "range":
        if ftype not in _ORDERED:
            raise InvalidArgument(
                f"{path}.range",
                f"field {name!r} is of type {rec.TYPE_NAMES[ftype]}; ranges need int, double "
                "or time",
            )
        test = _range(c.range, ftype, name, f"{path}.range")
    elif which == "exists":
        present = c.exists
        test = lambda m: (name in m) == present  # noqa: E731
    else:
        raise InvalidArgument(path, "set one of equals, in_set, range or exists")
    if c.negate:
        inner = test
        return lambda m: not inner(m)
    return test


def _range(r: cpb.Range, ftype: int, name: str, path: str) -> Predicate:
    bounds: list[tuple[str, Any]] = []
    for op in ("gte", "gt", "lte", "lt"):
        if r.HasField(op):
            bounds.append((op, _value(getattr(r, op), ftype, name, f"{path}.{op}")))
    if not bounds:
        raise InvalidArgument(path, "set at least one of gte, gt, lte, lt")

    def test(m: rec.Metadata) -> bool:
        if name not in m:
            return False
        x = m[name]
        for op, b in bounds:
            if (
                (op == "gte" and not x >= b)
                or (op == "gt" and not x > b)
                or (op == "lte" and not x <= b)
                or (op == "lt" and not x < b)
            ):
                return False
        return True

    return test


def named_fields(flt: cpb.Filter) -> set[str]:
    """Every metadata field a filter names, nested groups included."""
    out = {c.field for c in flt.must}
    for g in flt.any_of:
        out |= named_fields(g)
    return out


def field_types(pred: Predicate | None) -> dict[str, int]:
    """The schema types a compiled filter was compiled against (empty for a bare callable)."""
    return dict(pred.types) if isinstance(pred, CompiledFilter) else {}


def equality_hints(flt: cpb.Filter | None) -> list[tuple[str, frozenset[str]]]:
    """(field, string values) of the top-level, non-negated equals / in_set conditions: a
    record can only match if its field holds one of the values, so an index on the field
    narrows the records the predicate must look at."""
    if is_empty(flt):
        return []
    assert flt is not None
    out = []
    for c in flt.must:
        if c.negate:
            continue
        which = c.WhichOneof("match")
        if which == "equals" and c.equals.WhichOneof("kind") == "string_value":
            out.append((c.field, frozenset([c.equals.string_value])))
        elif which == "in_set" and all(
            v.WhichOneof("kind") == "string_value" for v in c.in_set.values
        ):
            out.append((c.field, frozenset(v.string_value for v in c.in_set.values)))
    return out
