"""Fit a face model's open-set calibration from an embedded labelled set.

References are the clean photos of the chosen identities; probes are every photo of those
identities under every degradation. A probe falls in the quality band of its own measured
quality, so each band's impostor tail describes faces like it. Impostor pairs: a probe against
every reference of another identity (all cross-identity pairs, not a sample). Genuine pairs: a
probe against the other photos of its identity (never its own source photo).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import stats

from facesearch_server.embedder.calibration import safety_factor
from facesearch_server.embedder.calibration.dataset import EmbeddedSet
from facesearch_server.runtime.open_set import ImpostorTail, QualityBand, ScoreCalibration

# Quality bands (face_quality's score): small or blurred faces, middling, clean.
DEFAULT_BAND_EDGES = (0.0, 0.15, 0.4, 1.0)  # a quality of exactly 1 joins the top band
# The empirical survival is trusted down to this FMR; the tail beyond it is the GPD fit.
TAIL_FMR = 1e-3
_BIN = 1e-3  # histogram resolution of the impostor scores
_KEEP_ABOVE = 0.15  # impostor scores kept exactly for the tail fit (the histogram has the rest)


def identity_fold(identity: str, folds: int = 2) -> int:
    """A stable fold for an identity (hash of its name), so calibration and evaluation never
    share a person however the data is ordered."""
    return int(hashlib.sha1(identity.encode()).hexdigest(), 16) % folds


def _pairs_in_blocks(
    probes: np.ndarray,
    probe_ids: np.ndarray,
    probe_src: np.ndarray,
    refs: np.ndarray,
    ref_ids: np.ndarray,
    ref_src: np.ndarray,
    block: int = 2048,
) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """(impostor scores, genuine scores) per block of probes, never materialising all pairs."""
    for i in range(0, len(probes), block):
        s = probes[i : i + block] @ refs.T
        same = probe_ids[i : i + block, None] == ref_ids[None, :]
        own = probe_src[i : i + block, None] == ref_src[None, :]
        yield s[~same], s[same & ~own]


def fit_tail(hist: np.ndarray, edges: np.ndarray, kept: np.ndarray, pairs: int) -> ImpostorTail:
    survival = 1.0 - np.cumsum(hist) / pairs  # P(score > right edge of each bin)
    right = edges[1:]
    tail_index = int(np.searchsorted(-survival, -TAIL_FMR))  # first bin with S <= TAIL_FMR
    threshold = float(right[min(tail_index, len(right) - 1)])
    exceed = kept[kept > threshold] - threshold
    p_threshold = len(exceed) / pairs
    shape, scale = 0.0, float(exceed.mean()) if len(exceed) else 0.01
    if len(exceed) >= 50:
        fitted_shape, _, fitted_scale = stats.genpareto.fit(exceed, floc=0.0)
        # A negative shape says the tail ends at a finite score. Cosines of different people
        # are sums of many small terms (Gaussian-like), whose tail is exponential (shape 0) in
        # the limit; a negative estimate comes from a finite sample, and on LFW it varied with
        # the identities drawn (-0.06 on one half, +0.03 on the other). Extrapolating a bounded
        # tail would promise an FPIR that people not in the sample break, so the tail is taken
        # exponential at least (the maximum-likelihood scale of an exponential is the mean).
        if fitted_shape > 0.0:
            shape, scale = float(fitted_shape), float(fitted_scale)
    # Every 0.005 from just below the lowest impostor score up to the threshold, which closes
    # the grid so the empirical curve and the fitted tail meet.
    first = max(int(np.argmax(survival < 1.0)) - 1, 0)
    idx = np.arange(first, min(tail_index, len(right) - 1), 5)
    grid = np.append(right[idx], threshold)
    log_s = np.log10(np.maximum(np.append(survival[idx], p_threshold), 1e-300))
    return ImpostorTail(
        grid=tuple(round(float(g), 4) for g in grid),
        log10_survival=tuple(round(float(v), 5) for v in log_s),
        threshold=threshold,
        p_threshold=float(p_threshold),
        shape=float(shape),
        scale=float(scale),
        pairs=int(pairs),
    )


def fit_calibration(
    data: EmbeddedSet,
    identities: set[str],
    model_id: str,
    band_edges: Sequence[float] = DEFAULT_BAND_EDGES,
    conditions: Sequence[str] | None = None,
) -> ScoreCalibration:
    """The bands fitted on every identity given, and the FMR safety factor learned by
    cross-validation over repeated random halves of them (safety_factor.py)."""
    conditions = list(conditions or data.conditions)
    cal = fit_bands(data, identities, model_id, band_edges, conditions)
    factor, seen = safety_factor.cross_validated_factor(
        data,
        identities,
        lambda half: fit_bands(data, half, model_id, band_edges, conditions),
        conditions,
    )
    return dataclasses.replace(
        cal, fmr_safety_factor=factor, source={**cal.source, "fmr_safety_cv": seen}
    )


def fit_bands(
    data: EmbeddedSet,
    identities: set[str],
    model_id: str,
    band_edges: Sequence[float] = DEFAULT_BAND_EDGES,
    conditions: Sequence[str] | None = None,
) -> ScoreCalibration:
    rows = np.array([i for i, who in enumerate(data.identities) if who in identities])
    clean = data.embeddings["clean"][rows]
    ok = ~np.isnan(clean).any(1)
    refs, ref_ids, ref_src = clean[ok], data.identities[rows][ok], rows[ok]
    probes, probe_ids, probe_src, probe_q = [], [], [], []
    for c in conditions or data.conditions:
        e, q = data.embeddings[c][rows], data.quality[c][rows]
        good = ~np.isnan(e).any(1)
        probes.append(e[good])
        probe_ids.append(data.identities[rows][good])
        probe_src.append(rows[good])
        probe_q.append(q[good])
    p, pid, psrc, pq = (np.concatenate(x) for x in (probes, probe_ids, probe_src, probe_q))
    edges = np.arange(-1.0, 1.0 + _BIN, _BIN)
    bands = []
    for low, high in itertools.pairwise(band_edges):
        sel = (pq >= low) & ((pq < high) | (high == band_edges[-1]))
        if sel.sum() < 20:
            raise ValueError(
                f"quality band [{low}, {high}) has {int(sel.sum())} probes: too few to calibrate"
                " (add degraded conditions or change the band edges)"
            )
        hist = np.zeros(len(edges) - 1, np.int64)
        kept, genuine = [], []
        for imp, gen in _pairs_in_blocks(p[sel], pid[sel], psrc[sel], refs, ref_ids, ref_src):
            hist += np.histogram(imp, bins=edges)[0]
            kept.append(imp[imp > _KEEP_ABOVE])
            genuine.append(gen)
        pairs = int(hist.sum())
        g = np.concatenate(genuine)
        bands.append(
            QualityBand(
                low=float(low),
                high=float(high),
                impostor=fit_tail(hist, edges, np.concatenate(kept), pairs),
                genuine_percentiles=tuple(
                    round(float(v), 4) for v in np.percentile(g, np.arange(1, 100))
                ),
                genuine_pairs=len(g),
                probes=int(sel.sum()),
            )
        )
    return ScoreCalibration(
        model_id=model_id,
        bands=tuple(bands),
        source={
            "identities": len(identities),
            "references": len(refs),
            "conditions": list(conditions or data.conditions),
        },
    )
