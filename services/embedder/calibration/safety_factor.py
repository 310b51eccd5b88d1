"""How far a fitted impostor curve under-estimates the false-match rate of *other* people.

The curve is fitted on the calibration identities; the people an archive searches for are
others. Identity sets differ in how many look-alikes (siblings, a politician's lookalike) they
hold, so a curve can be right for its own identities and low for the next ones: on LFW one
fold's curve met the other fold's pairs at 1.2-1.3x its predicted rate near FMR 1e-4.

The factor is what that under-estimate is *for an identity set not yet seen*, so it has to be
a quantile of a distribution, not one draw of it. Cross-validation over identities samples
that distribution: ``SPLITS`` times, split the calibration identities at random into two
halves, fit on one half, count the other half's impostor pairs above the thresholds the fit
gives for FMR 1e-3, 1e-4 and 1e-5 (each probe in its quality band), and take measured /
predicted; both directions. Per probe condition (clean, 24 px, blur, JPEG...) and FMR level
the factor is the ``QUANTILE`` quantile of those ratios (a new identity set is
under-estimated by more than the factor in about one case in ten); the card's factor is the
largest over the (condition, level) cells whose predictions rest on at least ``MIN_EVENTS``
expected pairs (fewer is noise), and never below 1. Per condition, because a band's curve is
the mix of the probes in it, and clean faces have a heavier impostor tail than the degraded
faces sharing their band (on LFW 1.2x at the top band's FMR 1e-4 score): an archive of clean
photos meets the clean tail, not the mix. One fixed split (the former
method) is a single draw: on LFW it gave 1.02 for fold 0 while the other fold's people met the
same curve at 1.2-1.3x.

Halves hold half the identities a full calibration has, so their ratios spread wider than a
full fold's would: the quantile errs on the safe side. What the factor does not correct: the
1:N conversion (open_set.py) treats a probe's comparisons as independent. Its union-bound
form N * FMR is an upper bound on the *expected* FPIR whatever the dependence; dependence only
widens the spread of a measured FPIR around it (a person with many photos and a look-alike in
the gallery moves a small gallery's rate by tenths of a percent), which is why bench/identify
gives a bootstrap interval over non-mated persons rather than over searches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from facesearch_server.embedder.calibration.dataset import EmbeddedSet
from facesearch_server.runtime.open_set import ScoreCalibration

LEVELS = (1e-3, 1e-4, 1e-5)
MIN_EVENTS = 20
SPLITS = 20  # random identity splits; x2 directions = 40 ratios per level
QUANTILE = 0.9


def random_halves(identities: set[str], splits: int, seed: int = 0) -> list[list[set[str]]]:
    """``splits`` random partitions of ``identities`` into two halves, reproducible: the
    identities are sorted first so the draw does not depend on set order."""
    rng = np.random.default_rng(seed)
    names = sorted(identities)
    out = []
    for _ in range(splits):
        order = rng.permutation(len(names))
        cut = len(names) // 2
        out.append([{names[i] for i in order[:cut]}, {names[i] for i in order[cut:]}])
    return out


def _band_thresholds(cal: ScoreCalibration, quality: np.ndarray) -> np.ndarray:
    """(probes, levels): each probe's threshold per level, from its quality band."""
    per_band = np.array([[b.impostor.score_at_fmr(level) for level in LEVELS] for b in cal.bands])
    values, inverse = np.unique(quality, return_inverse=True)
    # ScoreCalibration.band is the one rule for which band a quality falls in.
    band_of = {id(b): k for k, b in enumerate(cal.bands)}
    index = np.array([band_of[id(cal.band(float(v)))] for v in values], dtype=np.int64)
    return per_band[index[inverse]]


def _measured(
    data: EmbeddedSet, identities: set[str], cal: ScoreCalibration, conditions: Sequence[str]
) -> dict[str, list[tuple[float, float, int]]]:
    """Per condition, per level: (predicted pairs, measured pairs, pairs) over
    ``identities``' impostor pairs."""
    ids = data.identities
    rows = np.array([i for i, who in enumerate(ids) if who in identities])
    clean = data.embeddings["clean"][rows]
    ok = ~np.isnan(clean).any(1)
    refs, ref_ids = clean[ok], ids[rows][ok]
    out = {}
    for c in conditions:
        predicted = np.zeros(len(LEVELS))
        measured = np.zeros(len(LEVELS))
        pairs = 0
        e, q = data.embeddings[c][rows], data.quality[c][rows]
        good = ~np.isnan(e).any(1)
        probes, probe_ids = e[good], ids[rows][good]
        need = _band_thresholds(cal, q[good])
        for i in range(0, len(probes), 1024):
            s = probes[i : i + 1024] @ refs.T
            other = probe_ids[i : i + 1024, None] != ref_ids[None, :]
            n = float(other.sum())
            pairs += int(n)
            for j, level in enumerate(LEVELS):
                measured[j] += float(((s > need[i : i + 1024, j, None]) & other).sum())
                predicted[j] += level * n
        out[c] = [(float(p), float(m), pairs) for p, m in zip(predicted, measured, strict=True)]
    return out


def factor_from_ratios(
    ratios: Sequence[Sequence[float]],
    expected: Sequence[Sequence[float]],
    quantile: float = QUANTILE,
    min_events: float = MIN_EVENTS,
) -> float:
    """The factor from measured/predicted ``ratios`` per level (rows) and split (columns):
    the ``quantile`` of each level whose every prediction rests on ``min_events`` expected
    pairs, the largest of those, at least 1."""
    factor = 1.0
    for r, e in zip(ratios, expected, strict=True):
        if len(r) and min(e) >= min_events:
            factor = max(factor, float(np.quantile(r, quantile)))
    return factor


def cross_validated_factor(
    data: EmbeddedSet,
    identities: set[str],
    fit: Callable[[set[str]], ScoreCalibration],
    conditions: Sequence[str],
    splits: int = SPLITS,
    quantile: float = QUANTILE,
    seed: int = 0,
) -> tuple[float, list[dict[str, float]]]:
    """The factor, and per condition and level what it was learned from (card's source)."""
    keys = [(c, level) for c in conditions for level in LEVELS]
    ratios: dict[tuple[str, float], list[float]] = {k: [] for k in keys}
    expected: dict[tuple[str, float], list[float]] = {k: [] for k in keys}
    for halves in random_halves(identities, splits, seed):
        for fitted, held in ((0, 1), (1, 0)):
            cal = fit(halves[fitted])
            for c, per_level in _measured(data, halves[held], cal, conditions).items():
                for level, (pred, meas, _) in zip(LEVELS, per_level, strict=True):
                    ratios[c, level].append(meas / pred if pred else 0.0)
                    expected[c, level].append(pred)
    factor = factor_from_ratios(
        [ratios[k] for k in keys], [expected[k] for k in keys], quantile
    )  # fmt: skip
    seen = [
        {
            "condition": c,
            "fmr": level,
            "splits": splits,
            "ratio_median": round(float(np.median(ratios[c, level])), 3),
            f"ratio_q{round(quantile * 100)}": round(
                float(np.quantile(ratios[c, level], quantile)), 3
            ),
            "ratio_max": round(float(np.max(ratios[c, level])), 3),
            "expected_min": round(float(min(expected[c, level])), 1),
        }
        for c, level in keys
    ]
    return round(factor, 3), seen
