"""What a valid person, settings message and identification request are (INVALID_ARGUMENT
naming the field otherwise). Limits are the contract's (persons.proto)."""

from __future__ import annotations

import math
import re

from facesearch_contract.limits import max_bytes, max_items, value_range
from facesearch_contract.v1 import persons_pb2 as pb
from facesearch_server.runtime.errors import InvalidArgument
from facesearch_server.runtime.open_set import OperatingPoints
from facesearch_server.runtime.validation import batch_size, quote, require

PERSON_ID_BYTES = max_bytes(pb.Person, "person_id")
DISPLAY_NAME_BYTES = max_bytes(pb.Person, "display_name")
MAX_ATTRIBUTES = max_items(pb.Person, "attributes")
MAX_REFERENCES = max_items(pb.Person, "reference_ids")
MAX_FACE_IDS = max_items(pb.LabelFacesRequest, "face_ids")
MAX_PROBES = max_items(pb.IdentifyRequest, "faces")
_, MAX_CANDIDATES = value_range(pb.IdentifyRequest, "max_candidates")
_, MAX_PAGE = value_range(pb.ListPersonsRequest, "page_size")
_, MAX_CLUSTER_LIST = value_range(pb.ListClustersRequest, "max_clusters")
MAX_MERGED_CLUSTERS = max_items(pb.MergeClustersRequest, "cluster_ids")
CLUSTER_ID_BYTES = max_bytes(pb.MergeClustersRequest, "cluster_ids")
MAX_SPLIT_FACES = max_items(pb.SplitClusterRequest, "face_ids")
ATTRIBUTE_KEY_BYTES, ATTRIBUTE_VALUE_BYTES = 64, 1024
DEFAULT_CANDIDATES = 3
DEFAULT_PAGE = 100
_PERSON_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_person_id(value: str, field: str) -> str:
    require(value, field)
    if len(value.encode()) > PERSON_ID_BYTES:
        raise InvalidArgument(field, f"is {len(value.encode())} bytes; at most {PERSON_ID_BYTES}")
    if not _PERSON_ID.fullmatch(value):
        raise InvalidArgument(
            field,
            f"{quote(value)} is not a person id: use letters, digits, '.', '_' and '-', "
            "starting with a letter or a digit",
        )
    return value


def check_display_name(value: str, field: str) -> str:
    if len(value.encode()) > DISPLAY_NAME_BYTES:
        raise InvalidArgument(
            field, f"is {len(value.encode())} bytes; at most {DISPLAY_NAME_BYTES}"
        )
    return value


def check_attributes(attrs: dict[str, str], field: str) -> dict[str, str]:
    if len(attrs) > MAX_ATTRIBUTES:
        raise InvalidArgument(field, f"has {len(attrs)} entries; at most {MAX_ATTRIBUTES}")
    for key, value in attrs.items():
        if not key or len(key.encode()) > ATTRIBUTE_KEY_BYTES:
            raise InvalidArgument(field, f"key {quote(key)}: 1..{ATTRIBUTE_KEY_BYTES} bytes")
        if len(value.encode()) > ATTRIBUTE_VALUE_BYTES:
            raise InvalidArgument(
                f"{field}[{quote(key)}]", f"at most {ATTRIBUTE_VALUE_BYTES} bytes"
            )
    return dict(attrs)


def check_ids(ids: list[str], field: str, limit: int, allow_empty: bool = False) -> list[str]:
    if not ids and not allow_empty:
        raise InvalidArgument(field, "is empty: give at least one face id")
    batch_size(ids, field, limit)
    for i, pid in enumerate(ids):
        require(pid, f"{field}[{i}]")
        if len(pid.encode()) > 128:
            raise InvalidArgument(f"{field}[{i}]", "ids are at most 128 bytes")
    if len(set(ids)) != len(ids):
        raise InvalidArgument(field, "lists an id twice")
    return list(ids)


def points_from_proto(msg: pb.OperatingPoints, field: str) -> OperatingPoints:
    match = msg.match_fpir or OperatingPoints.match_fpir
    possible = msg.possible_fpir or OperatingPoints.possible_fpir
    quality = (
        msg.min_match_quality
        if msg.HasField("min_match_quality")
        else OperatingPoints.min_match_quality
    )
    for name, value in (("match_fpir", match), ("possible_fpir", possible)):
        if not (0.0 < value < 1.0) or math.isnan(value):
            raise InvalidArgument(f"{field}.{name}", f"is {value}; an FPIR is in (0, 1)")
    if possible < match:
        raise InvalidArgument(
            f"{field}.possible_fpir",
            f"is {possible}, below match_fpir {match}: possible is the looser point",
        )
    if not 0.0 <= quality <= 1.0 or math.isnan(quality):
        raise InvalidArgument(f"{field}.min_match_quality", f"is {quality}; it is in [0, 1]")
    return OperatingPoints(match, possible, float(quality))


def points_to_proto(points: OperatingPoints) -> pb.OperatingPoints:
    return pb.OperatingPoints(
        match_fpir=points.match_fpir,
        possible_fpir=points.possible_fpir,
        min_match_quality=points.min_match_quality,
    )


def check_cluster_ids(values: list[str], field: str) -> list[str]:
    batch_size(values, field, MAX_MERGED_CLUSTERS)
    for i, v in enumerate(values):
        require(v, f"{field}[{i}]")
        if len(v.encode()) > CLUSTER_ID_BYTES:
            raise InvalidArgument(
                f"{field}[{i}]", f"is {len(v.encode())} bytes; at most {CLUSTER_ID_BYTES}"
            )
    return values
