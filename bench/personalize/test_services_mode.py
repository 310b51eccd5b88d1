"""Smoke test of target testing through the services (``--mode services``): a small synthetic
gallery in a real retriever process, sessions on a real personalizer process and the test
Redis (127.0.0.1:6379, or FACESEARCH_TEST_REDIS_URL), a few targets and rounds."""

from __future__ import annotations

import os

import numpy as np
import pytest
import redis

from bench.common.timing import summarize
from bench.personalize.services_mode import evaluate
from bench.personalize.simulator import GroundTruth
from bench.personalize.target_testing import services_summary, services_table
from bench.personalize.test_pieces import _gallery

pytestmark = pytest.mark.slow

REDIS_URL = os.environ.get("FACESEARCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def test_target_testing_through_the_services() -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.exceptions.RedisError:
        pytest.fail(f"no Redis at {REDIS_URL}: start one (scripts/test.sh does)")
    g = _gallery(n_id=60, per=5, d=32)
    gt = GroundTruth(g.vectors, g.identity_codes(), g.attributes, "embedding", 0.03)
    max_rounds = 6
    out = evaluate(
        g.vectors,
        gt,
        np.arange(len(g.vectors)),
        targets=3,
        seeds=[0],
        k=6,
        max_rounds=max_rounds,
        flip=0.0,
        model_id="bench-model",
        redis_url=REDIS_URL,
    )
    for mode in ("services", "in-process"):
        for name in ("faircop", "rocchio"):
            r = out["rounds"][mode][name]
            assert len(r) == 3 and all(1 <= x <= max_rounds + 1 for x in r), (mode, name, r)
            assert out["rounds_per_s"][mode][name] >= 0
    # Every answered FaIRCoP round went through SubmitFeedback and was timed.
    answered = sum(min(x, max_rounds) - 1 for x in out["rounds"]["services"]["faircop"])
    assert len(out["round_s"]) == answered > 0
    assert all(0 < t < 30 for t in out["round_s"])
    rows = services_summary(out, max_rounds, summarize)
    assert set(rows["_agreement"]) == {"faircop", "rocchio"}
    text = services_table(
        {"flip": 0.0, "gallery": len(g.vectors), "k": 6, "max_rounds": 6, "truths": {"x": rows}}
    )
    assert "faircop (services)" in text and "rocchio (in-process)" in text
    assert "SubmitFeedback through the services" in text
