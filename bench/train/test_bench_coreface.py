"""The CoReFace evaluation bench (bench/train/bench_coreface.py): its pair metrics, and one
tiny run end to end on real faces (a few people, a few steps) giving every row of its table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bench.train.coreface_data import identity_part, lfw_parts
from bench.train.pair_metrics import fold_accuracy, threshold_at_far, verify
from harness.shared_data import shared_data


def test_threshold_lets_through_at_most_the_far_share_of_impostors() -> None:
    impostor = np.random.default_rng(0).normal(size=1000)
    t = threshold_at_far(impostor, 1e-2)
    assert (impostor > t).sum() == 10
    assert threshold_at_far(impostor, 0.0) == impostor.max()


def _clusters(people: int, per: int, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(people, 64))
    emb = np.repeat(centres, per, axis=0) + noise * rng.normal(size=(people * per, 64))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return emb.astype(np.float32), np.repeat([f"p{i}" for i in range(people)], per)


def test_verification_separates_good_from_useless_embeddings() -> None:
    good = verify(*_clusters(40, 4, noise=0.3))
    assert good.tar == 1.0 and good.accuracy > 0.99 and good.folds == 10
    assert good.genuine_pairs == 40 * 6 and good.impostor_pairs == 160 * 159 // 2 - 240
    assert good.tar_ci == (1.0, 1.0)
    emb, ids = _clusters(40, 4, noise=0.3)
    useless = verify(np.random.default_rng(1).normal(size=emb.shape).astype(np.float32), ids)
    assert useless.tar < 0.05 and 0.4 < useless.accuracy < 0.6
    assert useless.tar_ci[0] <= useless.tar <= useless.tar_ci[1]
    # Folds never split a person: each fold's pairs are its own people's.
    assert len(fold_accuracy(emb, ids)) == 10


def test_lfw_split_keeps_every_person_on_one_side() -> None:
    parts = lfw_parts(
        shared_data("lfw"),
        people={"fit": 10_000, "val": 10_000, "held_out": 10_000},
        per_person={"fit": 1, "val": 1, "held_out": 1},
        min_images={"fit": 2, "val": 2, "held_out": 2},
    )
    sides = {k: set(v.identities) for k, v in parts.items()}
    assert not (sides["fit"] & sides["val"] or sides["fit"] & sides["held_out"])
    assert not sides["val"] & sides["held_out"]
    assert sum(map(len, sides.values())) == 1680  # every LFW person of the folder
    assert 0.4 < len(sides["held_out"]) / 1680 < 0.6
    assert all(identity_part(p) == "held_out" for p in sides["held_out"])


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_tiny_run_gives_every_row_with_sane_values(tmp_path: Path) -> None:
    shared_data("lfw")
    shared_data("att_faces")
    from bench.train.bench_coreface import main

    out = tmp_path / "results.json"
    args = ["--fit-people", "6", "--fit-images", "4", "--val-people", "4", "--val-images", "3"]
    args += ["--test-people", "8", "--test-images", "3", "--domains", "att_faces"]
    args += ["--domain-people", "6", "--views", "1", "--lrs", "1e-4", "--steps", "1", "2"]
    args += ["--seeds", "2", "--batch-size", "8", "--conv-seeds", "1"]
    assert main([*args, "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]) == 0
    results = json.loads(out.read_text())

    tests = {"val", "lfw-held-out", "lfw-held-out-archival", "att_faces"}
    assert set(results["shipped"]) == tests
    rows = {(r["variant"], r["domain"], r["train_convs"]) for r in results["runs"]}
    assert rows == {
        ("arcface", "clean", 0),
        ("coreface", "clean", 0),
        ("arcface", "archival", 0),
        ("coreface", "archival", 0),
        ("arcface", "clean", 3),
        ("coreface", "clean", 3),
    }
    assert len(results["runs"]) == 4 * 2 + 2  # two seeds each, one conv run per variant
    assert len(results["grid"]) == 2 * 2  # two variants x two step counts
    for r in [{"metrics": results["shipped"]}, *results["runs"]]:
        for name, m in r["metrics"].items():
            assert 0.0 <= m["tar"] <= 1.0 and m["genuine_pairs"] > 0 and m["impostor_pairs"] > 0
            if name in ("lfw-held-out", "att_faces"):
                assert math.isfinite(m["accuracy"]) and m["accuracy"] > 0.5
    # SFace as shipped knows these faces; the held-out people are not training people.
    assert results["shipped"]["lfw-held-out"]["tar"] > 0.5
    assert results["sets"]["lfw-held_out"]["people"] == 8
    assert 0 < results["runs"][0]["seconds_per_step"] < 120
