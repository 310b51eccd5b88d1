"""Reading a face model's score calibration (calibration.proto), for services and callers alike.

The calibration is data (a measured survival curve and a fitted tail); how to read it is part
of the contract, so the retriever's decisions and a caller's own thresholds (the SDK's folder
labelling) use these functions and agree. Pure Python: the contract package needs no numpy.

    P(impostor score > t) = 10 ** interp(t, grid, log10_survival)           for t < threshold
                          = p_threshold * (1 + shape * (t - threshold) / scale) ** (-1 / shape)
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

from facesearch_contract.v1 import calibration_pb2


def _interp(x: float, xs: Sequence[float], ys: Sequence[float]) -> float:
    """Linear interpolation, clamped at both ends (numpy.interp's behaviour)."""
    if x <= xs[0]:
        return ys[0]
    if x >= xs[-1]:
        return ys[-1]
    i = bisect.bisect_right(xs, x)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def tail_fmr(
    score: float,
    grid: Sequence[float],
    log10_survival: Sequence[float],
    threshold: float,
    p_threshold: float,
    shape: float,
    scale: float,
) -> float:
    """P(impostor score > ``score``): the false-match rate of one comparison."""
    if score < threshold:
        return 10 ** _interp(score, grid, log10_survival)
    excess = score - threshold
    if shape == 0.0:
        return p_threshold * math.exp(-excess / scale)
    base = 1.0 + shape * excess / scale
    # A bounded tail (shape < 0) ends at threshold - scale / shape: nothing scores higher.
    return 0.0 if base <= 0.0 else p_threshold * base ** (-1.0 / shape)


def tail_score_at_fmr(
    fmr: float,
    grid: Sequence[float],
    log10_survival: Sequence[float],
    threshold: float,
    p_threshold: float,
    shape: float,
    scale: float,
) -> float:
    """The smallest score whose false-match rate is at most ``fmr``."""
    if fmr >= p_threshold:
        # The measured curve descends in score: interpolate score against -log10 S.
        target = -math.log10(max(fmr, 1e-300))
        return _interp(target, [-v for v in log10_survival], list(grid))
    ratio = fmr / p_threshold
    if shape == 0.0:
        return threshold - scale * math.log(ratio)
    return threshold + scale / shape * (ratio ** (-shape) - 1.0)


def fpir_from_fmr(fmr: float, references: int) -> float:
    """FPIR of a search over ``references`` faces, comparisons taken as independent."""
    if fmr >= 1.0:
        return 1.0
    # -expm1(M * log1p(-fmr)) keeps precision when fmr is tiny and M large.
    return -math.expm1(max(references, 1) * math.log1p(-fmr))


def fmr_for_fpir(fpir: float, references: int) -> float:
    if not 0.0 < fpir < 1.0:
        raise ValueError(f"FPIR must be in (0, 1), got {fpir}")
    return -math.expm1(math.log1p(-fpir) / max(references, 1))


def band_of(cal: calibration_pb2.ScoreCalibration, quality: float) -> calibration_pb2.QualityBand:
    """The quality band a face of this quality is judged in (the nearest end band outside)."""
    for band in cal.bands:
        if band.low <= quality < band.high:
            return band
    return cal.bands[0] if quality < cal.bands[0].low else cal.bands[-1]


def safety_factor(cal: calibration_pb2.ScoreCalibration) -> float:
    """The calibration's FMR safety factor (1 when unset)."""
    return max(float(cal.fmr_safety_factor), 1.0)


def score_at_fmr(cal: calibration_pb2.ScoreCalibration, fmr: float, quality: float) -> float:
    """The score a face of ``quality`` needs for a 1:1 false-match rate of ``fmr``."""
    t = band_of(cal, quality).impostor
    return tail_score_at_fmr(
        fmr / safety_factor(cal),
        t.grid,
        t.log10_survival,
        t.threshold,
        t.p_threshold,
        t.shape,
        t.scale,
    )
