"""The above-threshold tuning objective (IndexParams.tuning_objective): the tuner meets it on
queries it never saw, picks a narrower width than recall@10 where only close neighbours count,
falls back to recall@10 when the sample has nothing above the threshold; Describe shows both
figures through the service, across shards and a restart; bad thresholds are refused."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import faiss
import grpc
import numpy as np
import pytest

from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever import index_build, index_tuning
from facesearch_server.retriever.shard import LocalShard
from facesearch_server.retriever.shard_router import merge_field_stats
from harness.service_process import start_service
from tests.retriever.conftest import MODEL, Client, point, retriever_env

DIM = 64
# Same-person cosine here is ~0.75, a stranger's at most ~0.5: a threshold between them keeps
# only the same person's faces, as the face model's match threshold does on real faces.
MIN_SCORE = 0.6


def faces(rng: np.random.Generator, centres: np.ndarray, per: np.ndarray) -> np.ndarray:
    """``per[i]`` noisy unit vectors around identity ``i``: few faces per person, so most of a
    face's top 10 are strangers at diffuse distances (as in a real face gallery)."""
    who = np.repeat(np.arange(len(centres)), per)
    x = centres[who] + 0.07 * rng.standard_normal((len(who), DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def identities(rng: np.random.Generator, n: int) -> np.ndarray:
    c = rng.standard_normal((n, DIM))
    return c / np.linalg.norm(c, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def gallery() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    centres = identities(rng, 5_000)
    per = rng.integers(1, 5, len(centres))
    return faces(rng, centres, per), np.repeat(np.arange(len(centres)), per), centres


def tune(
    index: faiss.Index,
    x: np.ndarray,
    held: np.ndarray,
    target: float,
    objective: int,
    min_score: float | None,
) -> index_tuning.Tuning:
    t = index_tuning.tune(
        pb.INDEX_KIND_HNSW,
        index,
        x,
        np.arange(len(x), dtype=np.int64),
        held,
        pb.METRIC_INNER_PRODUCT,
        target,
        0,
        threading.Event(),
        objective=objective,
        min_score=min_score,
    )
    assert t is not None
    return t


@pytest.mark.slow
def test_above_threshold_is_met_on_unseen_faces_with_a_narrower_width(gallery) -> None:  # type: ignore[no-untyped-def]
    x, who, centres = gallery
    labels = np.arange(len(x), dtype=np.int64)
    held = index_tuning.held_out_rows(len(x))
    index = faiss.IndexIDMap2(faiss.IndexHNSWFlat(DIM, 8, faiss.METRIC_INNER_PRODUCT))
    faiss.downcast_index(index.index).hnsw.efConstruction = 40
    keep = np.setdiff1d(labels, held)
    index.add_with_ids(x[keep], labels[keep])

    by_recall = tune(index, x, held, 0.95, index_tuning.RECALL_AT_K, MIN_SCORE)
    by_above = tune(index, x, held, 0.99, index_tuning.ABOVE_THRESHOLD, MIN_SCORE)
    assert by_above.objective == index_tuning.ABOVE_THRESHOLD
    assert by_recall.objective == index_tuning.RECALL_AT_K
    assert by_above.above_threshold_recall >= 0.99 and by_above.target == pytest.approx(0.99)
    assert by_recall.recall >= 0.95
    # Both figures are measured either way, so Describe can show both.
    assert 0 < by_above.recall < 0.95 and by_recall.above_threshold_recall >= 0.99
    # The same person's faces are found long before the strangers that fill the top 10.
    assert by_above.width * 2 <= by_recall.width

    # Fresh faces of the same people, never in the sample: their exact top-10 neighbours at or
    # above the threshold (the same person's stored faces) come back at the tuned width.
    index.add_with_ids(x[held], labels[held])
    rng = np.random.default_rng(12)
    people = rng.choice(len(centres), 400, replace=False)
    q = faces(rng, centres[people], np.ones(len(people), np.int64))
    scores, truth = faiss.knn(q, x, 10, metric=faiss.METRIC_INNER_PRODUCT)
    sp = faiss.SearchParametersHNSW()
    sp.efSearch = by_above.width
    _, found = index.search(q, 10, params=sp)
    targets = [set(t[s >= MIN_SCORE].tolist()) for t, s in zip(truth, scores, strict=True)]
    assert all(who[list(t)].tolist() == [p] * len(t) for t, p in zip(targets, people, strict=True))
    total = sum(len(t) for t in targets)
    hit = sum(len(t & set(f.tolist())) for t, f in zip(targets, found, strict=True))
    assert total > 200 and hit / total >= 0.97


def test_nothing_above_the_threshold_falls_back_to_recall_at_k(gallery) -> None:  # type: ignore[no-untyped-def]
    x = gallery[0][:3_000]
    labels = np.arange(len(x), dtype=np.int64)
    held = index_tuning.held_out_rows(len(x))
    index = faiss.IndexIDMap2(faiss.IndexHNSWFlat(DIM, 8, faiss.METRIC_INNER_PRODUCT))
    keep = np.setdiff1d(labels, held)
    index.add_with_ids(x[keep], labels[keep])
    # No two faces are this close: there is nothing to measure above it.
    fallback = tune(index, x, held, 0.95, index_tuning.ABOVE_THRESHOLD, 0.999)
    plain = tune(index, x, held, 0.95, index_tuning.RECALL_AT_K, None)
    assert fallback.objective == index_tuning.RECALL_AT_K
    assert fallback.above_threshold_recall == 0.0 and plain.above_threshold_recall == 0.0
    assert fallback.width == plain.width and fallback.recall == plain.recall >= 0.95


def test_build_passes_the_objective_and_snapshots_read_older_tunings(gallery) -> None:  # type: ignore[no-untyped-def]
    x = gallery[0][:4_000]
    params = index_build.resolve_params(
        DIM,
        pb.IndexParams(
            kind=pb.INDEX_KIND_HNSW,
            hnsw_m=8,
            ef_construction=40,
            target_recall=0.99,
            tuning_objective=pb.TUNING_OBJECTIVE_ABOVE_THRESHOLD,
            min_score=MIN_SCORE,
        ),
    )
    ann = index_build.build(
        pb.INDEX_KIND_HNSW,
        DIM,
        pb.METRIC_INNER_PRODUCT,
        params,
        np.arange(len(x), dtype=np.int64),
        x,
        lambda _p: None,
        threading.Event(),
    )
    assert ann is not None and ann.tuning is not None
    assert ann.tuning.objective == index_tuning.ABOVE_THRESHOLD
    assert ann.tuning.above_threshold_recall >= 0.99 and ann.tuning.recall > 0
    # A snapshot written before the objective existed stores only width, recall and target.
    old = index_tuning.Tuning(width=64, recall=0.96, target=0.95)
    assert old.objective == index_tuning.RECALL_AT_K and old.above_threshold_recall == 0.0
    # The default objective is resolved and kept for fields that name none.
    plain = index_build.resolve_params(DIM, pb.IndexParams(kind=pb.INDEX_KIND_HNSW))
    assert plain.tuning_objective == pb.TUNING_OBJECTIVE_RECALL_AT_K
    assert not plain.HasField("min_score")


@pytest.mark.slow
def test_a_shard_describes_the_objective_in_force(tmp_path: Path, gallery) -> None:  # type: ignore[no-untyped-def]
    x = gallery[0][:3_000]

    def shard_with(name: str, min_score: float) -> pb.VectorFieldStats:
        index = pb.IndexParams(
            kind=pb.INDEX_KIND_HNSW,
            hnsw_m=8,
            ef_construction=40,
            train_threshold=1_000,
            target_recall=0.99,
            tuning_objective=pb.TUNING_OBJECTIVE_ABOVE_THRESHOLD,
            min_score=min_score,
        )
        spec = pb.VectorFieldSpec(
            name="face",
            dimension=DIM,
            metric=pb.METRIC_INNER_PRODUCT,
            model_id=MODEL,
            index=index_build.resolve_params(DIM, index),
        )
        shard = LocalShard(tmp_path / name, [spec], lambda _s, _n: None)
        try:
            shard.upsert([point(f"f{i}", x[i]) for i in range(len(x))])
            shard.build_now("face")
            return shard.field_stats()[0]
        finally:
            shard.close()

    measured = shard_with("measured", MIN_SCORE)
    assert measured.effective_index.tuning_objective == pb.TUNING_OBJECTIVE_ABOVE_THRESHOLD
    assert measured.measured_above_threshold_recall >= 0.99 and measured.measured_recall > 0
    # Nothing in the sample reaches 0.999: tuned by recall@10, and Describe says so.
    fallback = shard_with("fallback", 0.999)
    assert fallback.effective_index.tuning_objective == pb.TUNING_OBJECTIVE_RECALL_AT_K
    assert fallback.measured_above_threshold_recall == 0.0
    assert fallback.measured_recall >= 0.99


def test_collection_figures_are_the_lowest_shard_and_zero_unless_every_shard_measured() -> None:
    spec = pb.VectorFieldSpec(name="face", index=pb.IndexParams(kind=pb.INDEX_KIND_HNSW))

    def shard(recall: float, above: float) -> pb.VectorFieldStats:
        return pb.VectorFieldStats(
            name="face",
            build_state=pb.BUILD_STATE_READY,
            measured_recall=recall,
            measured_above_threshold_recall=above,
        )

    both = merge_field_stats(spec, [shard(0.9, 0.995), shard(0.8, 0.992)])
    assert both.measured_recall == pytest.approx(0.8)
    assert both.measured_above_threshold_recall == pytest.approx(0.992)
    partial = merge_field_stats(spec, [shard(0.9, 0.995), shard(0.8, 0.0)])
    assert partial.measured_above_threshold_recall == 0.0


def describe(c: Client, name: str) -> pb.VectorFieldStats:
    info = c.DescribeCollection(pb.DescribeCollectionRequest(collection=name)).collection
    return info.field_stats[0]


def wait_ready(c: Client, name: str, points: int) -> pb.VectorFieldStats:
    deadline = time.monotonic() + 120
    fs = describe(c, name)
    while time.monotonic() < deadline:
        fs = describe(c, name)
        if fs.build_state == pb.BUILD_STATE_READY and fs.indexed_vectors == points:
            return fs
        time.sleep(0.3)
    raise AssertionError(f"not built in time: {fs}")


@pytest.mark.slow
def test_describe_shows_both_figures_through_the_service(tmp_path: Path, gallery) -> None:  # type: ignore[no-untyped-def]
    x = gallery[0][:10_000]
    env = retriever_env(tmp_path / "data")
    params = pb.IndexParams(
        kind=pb.INDEX_KIND_HNSW,
        hnsw_m=8,
        ef_construction=40,
        train_threshold=4_000,
        target_recall=0.99,
        tuning_objective=pb.TUNING_OBJECTIVE_ABOVE_THRESHOLD,
        min_score=MIN_SCORE,
    )
    svc = start_service("retriever", env)
    try:
        c = Client(svc.channel(), None)
        c.create("faces", dim=DIM, shards=2, index=params)
        for lo in range(0, len(x), 1_000):
            c.upsert("faces", [point(f"f{i}", x[i]) for i in range(lo, lo + 1_000)])
        fs = wait_ready(c, "faces", len(x))
        eff = fs.effective_index
        assert eff.tuning_objective == pb.TUNING_OBJECTIVE_ABOVE_THRESHOLD
        assert eff.min_score == pytest.approx(MIN_SCORE) and eff.ef_search >= 16
        # Each shard met 0.99 of its above-threshold neighbours; recall@10 is shown beside it.
        assert fs.measured_above_threshold_recall >= 0.99, fs
        assert 0 < fs.measured_recall < 1, fs
        c.Snapshot(pb.SnapshotRequest(collection="faces", wait=True))
    finally:
        svc.stop()
    svc = start_service("retriever", env)
    try:
        again = describe(Client(svc.channel(), None), "faces")
        assert again.measured_above_threshold_recall == pytest.approx(
            fs.measured_above_threshold_recall
        )
        assert again.effective_index.ef_search == fs.effective_index.ef_search
        assert again.effective_index.tuning_objective == pb.TUNING_OBJECTIVE_ABOVE_THRESHOLD
    finally:
        svc.stop()


@pytest.mark.parametrize(
    ("metric", "kind", "objective", "min_score", "path"),
    [
        (pb.METRIC_INNER_PRODUCT, pb.INDEX_KIND_HNSW, 2, None, "min_score"),  # required
        (pb.METRIC_INNER_PRODUCT, pb.INDEX_KIND_HNSW, 2, math.nan, "min_score"),
        (pb.METRIC_INNER_PRODUCT, pb.INDEX_KIND_HNSW, 2, math.inf, "min_score"),
        (pb.METRIC_INNER_PRODUCT, pb.INDEX_KIND_HNSW, 2, 64.0, "min_score"),  # a percentage
        (pb.METRIC_INNER_PRODUCT, pb.INDEX_KIND_IVF_PQ, 1, -1.5, "min_score"),
        (pb.METRIC_L2, pb.INDEX_KIND_HNSW, 2, 0.5, "min_score"),  # L2 scores are <= 0
        (pb.METRIC_L2, pb.INDEX_KIND_HNSW, 2, -math.inf, "min_score"),
        (pb.METRIC_INNER_PRODUCT, pb.INDEX_KIND_FLAT, 0, 0.6, "min_score"),  # nothing to tune
        (pb.METRIC_INNER_PRODUCT, pb.INDEX_KIND_HNSW, 7, 0.6, "tuning_objective"),
    ],
)
def test_bad_objective_or_threshold_is_invalid_argument(
    alpha: Client,
    metric: int,
    kind: int,
    objective: int,
    min_score: float | None,
    path: str,
) -> None:
    params = pb.IndexParams(kind=kind, tuning_objective=objective)  # type: ignore[arg-type]
    if min_score is not None:
        params.min_score = min_score
    with pytest.raises(grpc.RpcError) as err:
        alpha.create("bad-threshold", metric=metric, index=params)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert f"index.{path}" in err.value.details()  # type: ignore[attr-defined]


def test_valid_thresholds_are_kept(alpha: Client) -> None:
    ip = alpha.create(
        "ok-threshold",
        index=pb.IndexParams(
            kind=pb.INDEX_KIND_HNSW,
            tuning_objective=pb.TUNING_OBJECTIVE_ABOVE_THRESHOLD,
            min_score=0.0,  # a real threshold, not "unset": presence is tracked
        ),
    )
    assert ip.vector_fields[0].index.HasField("min_score")
    assert ip.vector_fields[0].index.tuning_objective == pb.TUNING_OBJECTIVE_ABOVE_THRESHOLD
    l2 = alpha.create(
        "ok-threshold-l2",
        metric=pb.METRIC_L2,
        index=pb.IndexParams(kind=pb.INDEX_KIND_IVF_PQ, pq_m=4, min_score=-0.5),
    )
    # Measured only: the default objective stays in force.
    assert l2.vector_fields[0].index.tuning_objective == pb.TUNING_OBJECTIVE_RECALL_AT_K
