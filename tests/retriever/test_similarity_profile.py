"""VectorFieldStats.similarity_profile: the pair-score quantiles Describe reports are the stored
vectors' own (checked against numpy on everything stored), follow the data (a tight cone of
vectors reads higher than spread ones), refresh when the field grows, and are unset while too
few vectors are stored to say."""

from __future__ import annotations

import numpy as np

from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever import similarity_profile
from tests.retriever.conftest import DIM, Client, point, unit


def _profile(client: Client, name: str) -> pb.VectorFieldStats:
    info = client.DescribeCollection(pb.DescribeCollectionRequest(collection=name)).collection
    return info.field_stats[0]


def _truth(x: np.ndarray) -> tuple[float, float]:
    s = x @ x.T
    pairs = s[np.triu_indices(len(x), k=1)]
    return float(np.quantile(pairs, 0.5)), float(np.quantile(pairs, 0.98))


def test_profile_is_the_stored_vectors_own_over_shards(
    alpha: Client, rng: np.random.Generator
) -> None:
    alpha.create("prof_spread", shards=2)
    x = unit(rng, 600)
    alpha.upsert("prof_spread", [point(f"s{i}", v) for i, v in enumerate(x)])
    f = _profile(alpha, "prof_spread")
    assert f.HasField("similarity_profile")
    prof = f.similarity_profile
    median, p98 = _truth(x)
    # Each shard samples all of its ~300 vectors: the merged figures are its pairs' quantiles,
    # close to those of all pairs (cross-shard pairs are the same distribution).
    assert abs(prof.median - median) < 0.02 and abs(prof.p98 - p98) < 0.03, (prof, median, p98)
    assert 0.8 * 600 * 599 / 4 < prof.pairs < 600 * 599 / 2
    # Both shards sample all they hold: the merged centroid is about the mean direction of all
    # 600 (each shard reports a unit direction, so the merge weighs directions, not sums).
    mean = x.mean(0) / np.linalg.norm(x.mean(0))
    assert len(prof.centroid) == DIM and float(np.dot(prof.centroid, mean)) > 0.98

    # A cone (every vector near one direction) is "alike" on another scale entirely: that is
    # what the personalizer reads instead of assuming SFace's.
    alpha.create("prof_cone")
    c = unit(rng, 200) + 2.0 * unit(rng, 1)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    alpha.upsert("prof_cone", [point(f"c{i}", v) for i, v in enumerate(c)])
    cone = _profile(alpha, "prof_cone").similarity_profile
    assert abs(cone.p98 - _truth(c)[1]) < 0.01
    assert len(cone.centroid) == DIM and float(np.dot(cone.centroid, c.mean(0))) > 0.99 * float(
        np.linalg.norm(c.mean(0))
    )
    assert cone.median > prof.p98 + 0.2, (cone, prof)


def test_profile_unset_below_the_minimum_and_refreshed_on_growth(
    alpha: Client, rng: np.random.Generator
) -> None:
    alpha.create("prof_grow")
    few = unit(rng, similarity_profile.MIN_VECTORS - 1)
    alpha.upsert("prof_grow", [point(f"g{i}", v) for i, v in enumerate(few)])
    assert not _profile(alpha, "prof_grow").HasField("similarity_profile")
    # Growth to 100 spread vectors: now reported.
    spread = unit(rng, 100 - len(few))
    alpha.upsert("prof_grow", [point(f"h{i}", v) for i, v in enumerate(spread)])
    first = _profile(alpha, "prof_grow").similarity_profile
    assert first.pairs == 100 * 99 // 2
    # 100 more vectors all alike (one direction): more than a tenth of growth, so recomputed,
    # and the upper quantile moves up to the new, tight pairs.
    d = unit(rng, 1)[0]
    tight = unit(rng, 100) * 0.1 + d
    tight /= np.linalg.norm(tight, axis=1, keepdims=True)
    alpha.upsert("prof_grow", [point(f"t{i}", v) for i, v in enumerate(tight)])
    second = _profile(alpha, "prof_grow").similarity_profile
    assert second.pairs == 200 * 199 // 2
    assert second.p98 > first.p98 + 0.3, (first, second)


def test_sampling_and_merge_rules() -> None:
    rng = np.random.default_rng(3)
    x = unit(rng, 5000, DIM)
    labels = np.arange(5000, dtype=np.int64) * 3  # labels need not be 0..n-1
    prof = similarity_profile.compute(labels, lambda lab: x[lab // 3], pb.METRIC_INNER_PRODUCT)
    assert prof is not None
    assert prof.pairs == similarity_profile.SAMPLE * (similarity_profile.SAMPLE - 1) // 2
    median, p98 = _truth(x[:2000])
    assert abs(prof.median - median) < 0.01 and abs(prof.p98 - p98) < 0.02
    assert not prof.stale(5400) and prof.stale(5600) and prof.stale(4400)
    # L2: scores are negated squared distances, as searches return them.
    l2 = similarity_profile.pair_scores(np.array([[0.0, 0.0], [3.0, 4.0]]), pb.METRIC_L2)
    np.testing.assert_allclose(l2, [-25.0])
    sample = x[np.sort(np.random.default_rng(0).choice(5000, similarity_profile.SAMPLE, False))]
    mean = sample.mean(0) / np.linalg.norm(sample.mean(0))
    np.testing.assert_allclose(prof.centroid, mean, atol=1e-5)
    merged = similarity_profile.merge(
        [
            # 100 pairs: a sample of 15 vectors; 300: 25 (rounded up from 25.0)
            pb.SimilarityProfile(median=0.0, p98=0.2, pairs=105, centroid=[1.0, 0.0]),
            pb.SimilarityProfile(median=0.3, p98=0.5, pairs=300, centroid=[0.0, 1.0]),
            pb.SimilarityProfile(),  # a shard with too few vectors reports none
        ]
    )
    assert merged is not None and merged.pairs == 405
    np.testing.assert_allclose(
        [merged.median, merged.p98], [0.3 * 300 / 405, (0.2 * 105 + 0.5 * 300) / 405], atol=1e-6
    )
    # Centroids weighted by vectors sampled (15 and 25), then unit length again.
    np.testing.assert_allclose(
        merged.centroid, np.array([15.0, 25.0]) / np.hypot(15, 25), atol=1e-6
    )
    assert similarity_profile.merge([]) is None
