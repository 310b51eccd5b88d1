"""Open-set decisions from a score calibration: the 1:N conversion, the tail fit and the
decision rules, on synthetic impostor scores whose true distribution is known."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from facesearch_server.embedder.calibration.fit import fit_tail
from facesearch_server.runtime.open_set import (
    Decision,
    ImpostorTail,
    OperatingPoints,
    QualityBand,
    ScoreCalibration,
    decide,
    fmr_for_fpir,
    fpir_from_fmr,
)

SIGMA = 0.1  # synthetic impostor scores ~ N(0, 0.1), like a face model's cross-identity cosines


def gaussian_tail(n: int = 2_000_000, sigma: float = SIGMA, seed: int = 0) -> ImpostorTail:
    scores = np.random.default_rng(seed).normal(0.0, sigma, n)
    edges = np.arange(-1.0, 1.0 + 1e-3, 1e-3)
    hist = np.histogram(scores, bins=edges)[0]
    return fit_tail(hist, edges, scores[scores > 0.15], n)


@pytest.fixture(scope="module")
def tail() -> ImpostorTail:
    return gaussian_tail()


def band(tail: ImpostorTail, low: float = 0.0, high: float = math.inf) -> QualityBand:
    genuine = tuple(float(v) for v in np.linspace(0.3, 0.9, 99))
    return QualityBand(low, high, tail, genuine, genuine_pairs=1000, probes=100)


def test_fpir_and_fmr_are_inverse_and_grow_with_the_gallery() -> None:
    for m in (1, 100, 100_000):
        assert fpir_from_fmr(fmr_for_fpir(1e-3, m), m) == pytest.approx(1e-3, rel=1e-9)
    assert fmr_for_fpir(1e-3, 100_000) == pytest.approx(1e-8, rel=1e-3)
    assert fpir_from_fmr(1e-6, 1_000) > fpir_from_fmr(1e-6, 10)
    with pytest.raises(ValueError):
        fmr_for_fpir(0.0, 10)


def test_the_fitted_tail_is_measured_then_extrapolated_on_the_safe_side(
    tail: ImpostorTail,
) -> None:
    # Measured down to 1e-3 (2M samples see ~5e-7 at best): within 10 % of the truth there.
    for true_fmr in (1e-2, 1e-3, 1e-4):
        score = stats.norm.isf(true_fmr, scale=SIGMA)
        assert tail.fmr(score) == pytest.approx(true_fmr, rel=0.1), true_fmr
    # Beyond, the tail is exponential at least (fit.py: a bounded fit is not trusted), so a
    # Gaussian's lighter tail is over-, never under-estimated: the FPIR promised stays kept.
    for true_fmr in (1e-5, 1e-6, 1e-7, 1e-8):
        score = stats.norm.isf(true_fmr, scale=SIGMA)
        assert true_fmr <= tail.fmr(score) <= 20 * true_fmr, true_fmr
    assert tail.p_threshold == pytest.approx(1e-3, rel=0.1) and tail.shape == 0.0


def test_fmr_falls_with_the_score_and_score_at_fmr_inverts_it(tail: ImpostorTail) -> None:
    scores = np.linspace(-0.2, 0.7, 200)
    fmr = [tail.fmr(float(s)) for s in scores]
    assert all(a >= b for a, b in itertools.pairwise(fmr))
    for target in (0.2, 1e-2, 1e-3, 1e-5, 1e-8):
        t = tail.score_at_fmr(target)
        assert tail.fmr(t) == pytest.approx(target, rel=0.05), target


def test_a_bigger_gallery_needs_a_higher_score(tail: ImpostorTail) -> None:
    cal = ScoreCalibration("m", (band(tail),))
    t = [cal.threshold(1e-3, 1.0, m) for m in (1, 100, 10_000, 1_000_000)]
    assert t == sorted(t) and t[-1] - t[0] > 0.15


def test_the_promise_holds_in_a_simulated_gallery(tail: ImpostorTail) -> None:
    # Searches of people not enrolled against M references drawn from the true distribution.
    cal = ScoreCalibration("m", (band(tail),))
    rng = np.random.default_rng(1)
    for m in (100, 2_000):
        threshold = cal.threshold(0.05, 1.0, m)
        best = rng.normal(0.0, SIGMA, (4_000, m)).max(1)
        measured = float((best >= threshold).mean())
        assert 0.02 < measured < 0.08, (m, measured)


def test_decisions_follow_operating_points_and_quality(tail: ImpostorTail) -> None:
    # The poor-quality band has a heavier impostor tail (small faces look alike).
    poor = gaussian_tail(sigma=0.15, seed=2)
    cal = ScoreCalibration("m", (band(poor, 0.0, 0.3), band(tail, 0.3, math.inf)))
    points = OperatingPoints(match_fpir=1e-3, possible_fpir=1e-2, min_match_quality=0.2)
    m = 1_000
    t_match = cal.threshold(1e-3, 0.9, m)
    t_possible = cal.threshold(1e-2, 0.9, m)
    assert decide(cal, points, t_match + 0.01, 0.9, m).decision is Decision.MATCH
    assert decide(cal, points, (t_match + t_possible) / 2, 0.9, m).decision is Decision.POSSIBLE
    assert decide(cal, points, t_possible - 0.05, 0.9, m).decision is Decision.UNKNOWN
    # The same score from a poor face: its band needs more, so it is no longer a match.
    assert cal.threshold(1e-3, 0.25, m) > t_match
    assert decide(cal, points, t_match + 0.01, 0.25, m).decision is not Decision.MATCH
    # Below min_match_quality even a perfect score is only possible.
    assert decide(cal, points, 0.99, 0.1, m).decision is Decision.POSSIBLE
    # The reported FPIR is the gallery's, at this score.
    result = decide(cal, points, t_match, 0.9, m)
    assert result.estimated_fpir == pytest.approx(1e-3, rel=0.05)


def test_operating_points_are_checked() -> None:
    with pytest.raises(ValueError):
        OperatingPoints(match_fpir=0.0)
    with pytest.raises(ValueError):
        OperatingPoints(match_fpir=1e-2, possible_fpir=1e-3)


def test_calibration_round_trips_through_a_dict(tail: ImpostorTail) -> None:
    cal = ScoreCalibration("sface", (band(tail, 0.0, 0.5), band(tail, 0.5, math.inf)), {"n": 1})
    again = ScoreCalibration.from_dict(cal.to_dict())
    assert again == cal
    assert again.band(0.7).low == 0.5 and again.band(-1.0).low == 0.0


def test_the_safety_factor_multiplies_every_fmr_the_calibration_gives(tail: ImpostorTail) -> None:
    from facesearch_contract import calibration as contract
    from facesearch_server.runtime.calibration_proto import (
        calibration_from_proto,
        calibration_to_proto,
    )
    from facesearch_server.runtime.errors import InvalidArgument

    plain = ScoreCalibration("m", (band(tail),))
    safe = ScoreCalibration("m", (band(tail),), fmr_safety_factor=4.0)
    # A 4x safety factor: a promise of FMR f needs the score the bare curve gives f / 4.
    for m in (1, 1_000):
        assert safe.threshold(1e-3, 0.9, m) == pytest.approx(
            plain.band(0.9).impostor.score_at_fmr(fmr_for_fpir(1e-3, m) / 4)
        )
        assert safe.threshold(1e-3, 0.9, m) > plain.threshold(1e-3, 0.9, m)
    assert safe.fmr(0.4, 0.9) == pytest.approx(4 * plain.fmr(0.4, 0.9))
    # The contract's reader (the SDK's 1:1 thresholds) applies it the same way.
    proto = calibration_to_proto(safe)
    assert proto.fmr_safety_factor == 4.0
    assert contract.score_at_fmr(proto, 1e-4, 0.9) == pytest.approx(safe.threshold(1e-4, 0.9, 1))
    back = calibration_from_proto(proto)  # float32 fields: equal to float32 precision
    assert back.fmr_safety_factor == 4.0
    assert back.threshold(1e-3, 0.9, 100) == pytest.approx(safe.threshold(1e-3, 0.9, 100), abs=1e-5)
    assert ScoreCalibration.from_dict(safe.to_dict()) == safe
    proto.fmr_safety_factor = 0.0  # unset: no factor
    assert calibration_from_proto(proto).fmr_safety_factor == 1.0
    for bad in (0.5, math.nan, math.inf):
        proto.fmr_safety_factor = bad
        with pytest.raises(InvalidArgument, match="fmr_safety_factor"):
            calibration_from_proto(proto)
    with pytest.raises(ValueError, match="at least 1"):
        ScoreCalibration.from_dict({**safe.to_dict(), "fmr_safety_factor": 0.9})
