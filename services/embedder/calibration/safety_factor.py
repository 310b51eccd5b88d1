"""How far a fitted impostor curve under-estimates the false-match rate of *other* people.

The curve is fitted on the calibration identities; the people an archive searches for are
others. Identity sets differ in how many look-alikes (siblings, a politician's lookalike) they
hold, so a curve can be right for its own identities and low for the next ones: on LFW one
fold's curve met the other fold's pairs at 1.0-1.5x its predicted rate near FMR 1e-4.

Cross-validation over identities measures that: split the calibration identities in two
halves (by a hash of the name), fit on one half, count the other half's impostor pairs above
the thresholds the fit gives for FMR 1e-3, 1e-4 and 1e-5 (each probe in its quality band),
and take measured / predicted; both directions. The factor is the largest ratio whose
prediction rests on at least ``MIN_EVENTS`` expected pairs (fewer is noise), and never below 1.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np

from facesearch_server.embedder.calibration.dataset import EmbeddedSet
from facesearch_server.runtime.open_set import ScoreCalibration

LEVELS = (1e-3, 1e-4, 1e-5)
MIN_EVENTS = 20


def half_of(identity: str) -> int:
    # Salted so the halves cut across the folds calibration.fit.identity_fold makes.
    return int(hashlib.sha1(f"cv:{identity}".encode()).hexdigest(), 16) % 2


def _measured(
    data: EmbeddedSet, identities: set[str], cal: ScoreCalibration, conditions: Sequence[str]
) -> list[tuple[float, float, int]]:
    """Per level: (predicted pairs, measured pairs, pairs) over ``identities``' impostor pairs."""
    ids = data.identities
    rows = np.array([i for i, who in enumerate(ids) if who in identities])
    clean = data.embeddings["clean"][rows]
    ok = ~np.isnan(clean).any(1)
    refs, ref_ids = clean[ok], ids[rows][ok]
    predicted = np.zeros(len(LEVELS))
    measured = np.zeros(len(LEVELS))
    pairs = 0
    for c in conditions:
        e, q = data.embeddings[c][rows], data.quality[c][rows]
        good = ~np.isnan(e).any(1)
        probes, probe_ids, probe_q = e[good], ids[rows][good], q[good]
        # Each probe's threshold per level, from its quality band.
        need = np.array(
            [[cal.band(float(x)).impostor.score_at_fmr(level) for level in LEVELS] for x in probe_q]
        )
        for i in range(0, len(probes), 1024):
            s = probes[i : i + 1024] @ refs.T
            other = probe_ids[i : i + 1024, None] != ref_ids[None, :]
            n = other.sum(1)
            pairs += int(n.sum())
            for j, level in enumerate(LEVELS):
                above = (s > need[i : i + 1024, j, None]) & other
                measured[j] += float(above.sum())
                predicted[j] += level * float(n.sum())
    return [(float(p), float(m), pairs) for p, m in zip(predicted, measured, strict=True)]


def cross_validated_factor(
    data: EmbeddedSet,
    identities: set[str],
    fit: Callable[[set[str]], ScoreCalibration],
    conditions: Sequence[str],
) -> tuple[float, list[dict[str, float]]]:
    """The factor, and what it was learned from (for the card's source)."""
    halves = [{p for p in identities if half_of(p) == h} for h in (0, 1)]
    factor, seen = 1.0, []
    for fitted, held in ((0, 1), (1, 0)):
        cal = fit(halves[fitted])
        for level, (predicted, measured, pairs) in zip(
            LEVELS, _measured(data, halves[held], cal, conditions), strict=True
        ):
            ratio = measured / predicted if predicted else 0.0
            seen.append(
                {"fmr": level, "ratio": round(ratio, 3), "expected": round(predicted, 1),
                 "pairs": pairs}
            )  # fmt: skip
            if predicted >= MIN_EVENTS:
                factor = max(factor, ratio)
    return round(factor, 3), seen
