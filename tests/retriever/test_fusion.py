"""Multi-term queries: stored point, enrolled person, a second vector field; weighted sum and
reciprocal rank fusion, checked against the same sums computed here from the vectors."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from facesearch_contract.v1 import retriever_pb2 as pb
from tests.retriever.conftest import DIM, MODEL, Client, code_of, point, unit

TEXT = "minilm-l6-v2"
TDIM = 8


@pytest.fixture(scope="module")
def data(alpha: Client) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    caption = pb.VectorFieldSpec(name="caption", dimension=TDIM, model_id=TEXT)
    alpha.create("fused", shards=2, extra_fields=[caption])
    x = unit(rng, 80)
    t = unit(rng, 80, TDIM)
    pts = []
    for i in range(80):
        p = point(f"f{i}", x[i], person_id=f"per{i % 8}")
        if i % 5:  # some records lack a caption: their caption similarity counts as 0
            p.vectors["caption"].values.extend(t[i].tolist())
            p.model_ids["caption"] = TEXT
        pts.append(p)
    alpha.upsert("fused", pts)
    return x, t


def expected(scores: np.ndarray, k: int) -> list[str]:
    return [f"f{j}" for j in np.argsort(-scores, kind="stable")[:k]]


def test_face_plus_caption_weighted_sum(alpha: Client, data: tuple[np.ndarray, np.ndarray]) -> None:
    x, t = data
    qf, qt = x[3] * 0.8 + x[40] * 0.2, t[41]
    req = pb.SearchRequest(collection="fused")
    q = req.queries.add(k=5)
    q.terms.add(field="face", model_id=MODEL, weight=1.0).vector.values.extend(qf.tolist())
    q.terms.add(field="caption", model_id=TEXT, weight=0.5).vector.values.extend(qt.tolist())
    hits = alpha.Search(req).results[0].hits
    has_caption = np.array([i % 5 != 0 for i in range(80)])
    truth = x @ qf + 0.5 * np.where(has_caption, t @ qt, 0.0)
    # Candidates come from each term's top lists; the best fused records are in them here.
    assert [h.id for h in hits][:3] == expected(truth, 3)
    assert hits[0].score == pytest.approx(truth.max(), abs=1e-4)
    assert len(hits[0].term_scores) == 2


def test_a_record_lacking_a_field_scores_the_terms_missing_similarity(
    alpha: Client, data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, t = data
    req = pb.SearchRequest(collection="fused")
    q = req.queries.add(k=80)
    q.terms.add(field="face", model_id=MODEL, weight=1.0).vector.values.extend(x[5].tolist())
    cap = q.terms.add(field="caption", model_id=TEXT, weight=0.5, missing_similarity=-0.25)
    cap.vector.values.extend(t[6].tolist())
    hits = {h.id: h for h in alpha.Search(req).results[0].hits}
    assert "f5" in hits and "f6" in hits  # f5 has no caption (5 % 5 == 0), f6 has one
    assert hits["f5"].term_scores[1] == pytest.approx(-0.25)
    assert hits["f5"].score == pytest.approx(1.0 - 0.125, abs=1e-4)
    assert hits["f6"].term_scores[1] == pytest.approx(1.0, abs=1e-4)
    cap.missing_similarity = float("nan")
    assert code_of(lambda: alpha.Search(req)) == grpc.StatusCode.INVALID_ARGUMENT


def test_point_id_term(alpha: Client, data: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = data
    req = pb.SearchRequest(collection="fused")
    req.queries.add(k=4).terms.add(point_id="f7")
    assert [h.id for h in alpha.Search(req).results[0].hits] == expected(x @ x[7], 4)


@pytest.mark.parametrize("agg", [pb.PERSON_AGGREGATION_MEAN, pb.PERSON_AGGREGATION_MAX])
def test_person_term(alpha: Client, data: tuple[np.ndarray, np.ndarray], agg: int) -> None:
    x, _ = data
    faces = x[[i for i in range(80) if i % 8 == 3]]
    if agg == pb.PERSON_AGGREGATION_MEAN:
        m = faces.mean(axis=0)
        truth = x @ (m / np.linalg.norm(m))
    else:
        truth = (x @ faces.T).max(axis=1)
    req = pb.SearchRequest(collection="fused")
    req.queries.add(k=6).terms.add(person_id="per3", person_aggregation=agg)
    hits = alpha.Search(req).results[0].hits
    # MAX ties at 1.0 on the person's own faces, so compare scores, then each id's score.
    assert [h.score for h in hits] == pytest.approx(np.sort(truth)[::-1][:6].tolist(), abs=1e-4)
    assert all(h.score == pytest.approx(truth[int(h.id[1:])], abs=1e-4) for h in hits)
    missing = pb.SearchRequest(collection="fused")
    missing.queries.add(k=6).terms.add(person_id="nobody")
    assert code_of(lambda: alpha.Search(missing)) == grpc.StatusCode.NOT_FOUND


def test_rrf(alpha: Client, data: tuple[np.ndarray, np.ndarray]) -> None:
    x, t = data
    req = pb.SearchRequest(collection="fused")
    q = req.queries.add(k=3, fusion=pb.FUSION_RRF)
    q.terms.add(field="face", model_id=MODEL).vector.values.extend(x[12].tolist())
    q.terms.add(field="caption", model_id=TEXT).vector.values.extend(t[12].tolist())
    hits = alpha.Search(req).results[0].hits
    # f12 is first on both lists: 1/61 + 1/61.
    assert hits[0].id == "f12" and hits[0].score == pytest.approx(2 / 61, rel=1e-5)
    assert hits[1].score < hits[0].score


def test_only_negative_weights_refused(alpha: Client, data: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = data
    req = pb.SearchRequest(collection="fused")
    req.queries.add(k=3).terms.add(model_id=MODEL, weight=-1).vector.values.extend(x[0].tolist())
    assert code_of(lambda: alpha.Search(req)) == grpc.StatusCode.INVALID_ARGUMENT
    assert DIM == x.shape[1]
