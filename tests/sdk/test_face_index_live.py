"""The face index chosen at collection creation (facesearch.FaceIndex, `facesearch index
--index/--tuning-objective`) is the one the real retriever's Describe reports, through the
sync and the asyncio API; wrong choices fail before any call."""

from __future__ import annotations

import io
from typing import Any

import pytest

from facesearch import FaceIndex, FacesearchClient, FacesearchError, cli, flows
from facesearch.cli import build_parser
from facesearch.cli_face_index import face_index_of
from facesearch_contract.v1 import retriever_pb2 as pb
from harness.service_process import ServiceProcess

CASES = [
    (FaceIndex("hnsw", "above_threshold", target_recall=0.99, min_score=0.64), "above"),
    (FaceIndex("hnsw", "recall_at_k"), "recall"),
]


@pytest.mark.parametrize(("face_index", "tag"), CASES)
def test_describe_reports_the_objective_chosen(api: Any, face_index: FaceIndex, tag: str) -> None:
    name = f"objective_{tag}_{api.mode}"
    info, created = api.ensure_collection(name, with_text_field=False, face_index=face_index)
    assert created
    described = api.rpc(
        "retriever", "DescribeCollection", pb.DescribeCollectionRequest(collection=name)
    ).collection
    face = next(f for f in described.vector_fields if f.name == "face")
    stats = next(s for s in described.field_stats if s.name == "face")
    for index in (info.vector_fields[0].index, face.index, stats.effective_index):
        assert index.kind == pb.INDEX_KIND_HNSW
        assert index.tuning_objective == face_index.params().tuning_objective
        assert index.HasField("min_score") == (face_index.min_score is not None)
        if face_index.min_score is not None:
            assert index.min_score == pytest.approx(face_index.min_score)
    # Unset target recall reads the retriever's default back, a set one itself.
    assert face.index.target_recall == pytest.approx(face_index.target_recall or 0.95)
    # Created once: a second call keeps the collection and its index.
    again, created = api.ensure_collection(name, face_index=FaceIndex())
    assert not created and again.vector_fields[0].index.kind == pb.INDEX_KIND_HNSW


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "hnsw", "objective": "above_threshold"},  # no min_score
        {"kind": "flat", "objective": "above_threshold", "min_score": 0.6},
        {"kind": "hnsw", "target_recall": 1.5},
        {"kind": "hnsw", "min_score": 2.0},
        {"kind": "annoy"},
        {"kind": "hnsw", "objective": "precision"},
    ],
)
def test_wrong_choices_fail_early(kwargs: dict[str, Any]) -> None:
    with pytest.raises(FacesearchError):
        FaceIndex(**kwargs)


def test_cli_options_make_the_face_index() -> None:
    parse = build_parser().parse_args
    assert face_index_of(parse(["index", "photos"])) is None
    chosen = face_index_of(
        parse(["index", "photos", "--tuning-objective", "above-threshold", "--min-score", "0.64"])
    )
    assert chosen == FaceIndex("hnsw", "above_threshold", min_score=0.64)
    ivf = face_index_of(parse(["index", "photos", "--index", "ivf-pq", "--target-recall", "0.9"]))
    assert ivf == FaceIndex("ivf_pq", "recall_at_k", target_recall=0.9)


def test_cli_describe_shows_the_objective(
    suite: dict[str, ServiceProcess], client: FacesearchClient
) -> None:
    face_index = FaceIndex("hnsw", "above_threshold", target_recall=0.99, min_score=0.64)
    flows.ensure_collection(client, "objective_cli", with_text_field=False, face_index=face_index)
    addresses = [a for n, svc in suite.items() for a in (f"--{n}", svc.address)]
    out = io.StringIO()
    assert cli.main(["collections", "describe", "objective_cli", *addresses], out=out) == 0
    assert (
        "index: hnsw exact, 0 of 0 in the index, ef_search tuned after the build for "
        "above-threshold recall 0.99 (min score 0.64)"
    ) in out.getvalue(), out.getvalue()
