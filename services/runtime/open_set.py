"""Open-set identification decisions from a face model's score calibration.

A 1:1 threshold does not carry over to searching N people: the chance that *some* enrolled
reference scores above it grows with the number searched. So the calibration keeps the
per-comparison impostor distribution (false-match rate, FMR, as a function of the score) for
each band of probe quality, and a decision converts it to the false-positive identification
rate (FPIR: the share of searches for someone not enrolled that return a match) of the gallery
actually searched::

    FPIR(t) = 1 - (1 - FMR(t)) ** M        M = reference faces compared

treating comparisons as independent. Real impostor scores of one probe are positively
correlated (some faces look like many), which makes the true FPIR lower than this, so the
promise errs on the safe side; bench/identify measures how far.

FMR far below what a calibration set can observe (1e-3 / 100,000 references = 1e-8) comes from
a generalised Pareto fit to the impostor tail (the peaks-over-threshold method of extreme
value theory); above the fit's threshold the empirical survival is used as measured. The
formulas are the contract's (facesearch_contract.calibration), so callers read a calibration
exactly as the services do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from facesearch_contract import calibration
from facesearch_contract.calibration import fmr_for_fpir, fpir_from_fmr


@dataclass(frozen=True)
class ImpostorTail:
    """Survival function S(t) = P(impostor score > t) of one quality band.

    ``grid``/``log10_survival``: the empirical survival at scores in ``grid`` (ascending), used
    below ``threshold``; above it, S(t) = p_threshold * GPD(shape, scale).sf(t - threshold).
    """

    grid: tuple[float, ...]
    log10_survival: tuple[float, ...]
    threshold: float
    p_threshold: float
    shape: float
    scale: float
    pairs: int

    def fmr(self, score: float) -> float:
        return calibration.tail_fmr(score, *self._curve())

    def _curve(self) -> tuple:  # type: ignore[type-arg]
        return (
            self.grid,
            self.log10_survival,
            self.threshold,
            self.p_threshold,
            self.shape,
            self.scale,
        )

    def score_at_fmr(self, fmr: float) -> float:
        """The smallest score whose FMR is at most ``fmr`` (inverse of ``fmr``)."""
        return calibration.tail_score_at_fmr(fmr, *self._curve())

    def to_dict(self) -> dict[str, Any]:
        return {
            "grid": list(self.grid),
            "log10_survival": list(self.log10_survival),
            "threshold": self.threshold,
            "p_threshold": self.p_threshold,
            "shape": self.shape,
            "scale": self.scale,
            "pairs": self.pairs,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImpostorTail:
        return cls(
            grid=tuple(float(v) for v in d["grid"]),
            log10_survival=tuple(float(v) for v in d["log10_survival"]),
            threshold=float(d["threshold"]),
            p_threshold=float(d["p_threshold"]),
            shape=float(d["shape"]),
            scale=float(d["scale"]),
            pairs=int(d["pairs"]),
        )


@dataclass(frozen=True)
class QualityBand:
    """Probes whose quality score is in [low, high): their impostor tail and genuine scores."""

    low: float
    high: float
    impostor: ImpostorTail
    # Genuine (same person, other photo) score percentiles 1..99, for miss-rate estimates.
    genuine_percentiles: tuple[float, ...]
    genuine_pairs: int
    probes: int

    def fnmr(self, threshold: float) -> float:
        """Estimated share of genuine comparisons scoring below ``threshold``."""
        pct = np.arange(1, 100) / 100.0
        return float(np.interp(threshold, self.genuine_percentiles, pct, left=0.0, right=1.0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "low": self.low,
            "high": self.high,
            "impostor": self.impostor.to_dict(),
            "genuine_percentiles": list(self.genuine_percentiles),
            "genuine_pairs": self.genuine_pairs,
            "probes": self.probes,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QualityBand:
        return cls(
            low=float(d["low"]),
            high=float(d["high"]),
            impostor=ImpostorTail.from_dict(d["impostor"]),
            genuine_percentiles=tuple(float(v) for v in d["genuine_percentiles"]),
            genuine_pairs=int(d["genuine_pairs"]),
            probes=int(d["probes"]),
        )


@dataclass(frozen=True)
class ScoreCalibration:
    """A face model's calibration: one band per range of probe quality, ascending. A
    comparison's FMR is its band's curve times ``fmr_safety_factor`` (>= 1), a high quantile
    of the under-estimate seen when curves fitted on some identities met others
    (calibration/safety_factor.py)."""

    model_id: str
    bands: tuple[QualityBand, ...]
    source: dict[str, Any] = field(default_factory=dict)
    fmr_safety_factor: float = 1.0

    def band(self, quality: float) -> QualityBand:
        for b in self.bands:
            if b.low <= quality < b.high:
                return b
        return self.bands[0] if quality < self.bands[0].low else self.bands[-1]

    def fmr(self, score: float, quality: float) -> float:
        return min(1.0, self.fmr_safety_factor * self.band(quality).impostor.fmr(score))

    def fpir(self, score: float, quality: float, references: int) -> float:
        """Estimated FPIR of a search over ``references`` faces at threshold ``score``."""
        return fpir_from_fmr(self.fmr(score, quality), references)

    def threshold(self, fpir: float, quality: float, references: int) -> float:
        """The score a candidate needs for an FPIR of at most ``fpir`` over ``references``
        (with ``references`` = 1: for a 1:1 false-match rate of ``fpir``)."""
        fmr = fmr_for_fpir(fpir, references) / self.fmr_safety_factor
        return self.band(quality).impostor.score_at_fmr(fmr)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "bands": [b.to_dict() for b in self.bands],
            "source": self.source,
            "fmr_safety_factor": self.fmr_safety_factor,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScoreCalibration:
        bands = tuple(QualityBand.from_dict(b) for b in d["bands"])
        if not bands:
            raise ValueError("a calibration needs at least one quality band")
        factor = float(d.get("fmr_safety_factor", 1.0))
        if not factor >= 1.0:  # also refuses NaN
            raise ValueError(f"fmr_safety_factor must be at least 1, got {factor}")
        return cls(
            model_id=str(d["model_id"]),
            bands=bands,
            source=dict(d.get("source", {})),
            fmr_safety_factor=factor,
        )


class Decision(Enum):
    MATCH = "match"
    POSSIBLE = "possible"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class OperatingPoints:
    """Per collection: the FPIR promised for ``match`` and for ``possible``; faces whose quality
    is below ``min_match_quality`` can reach ``possible`` at most, whatever their score (a tiny
    or blurred face carries too little evidence for a name)."""

    match_fpir: float = 1e-3
    possible_fpir: float = 1e-2
    min_match_quality: float = 0.1

    def __post_init__(self) -> None:
        for name in ("match_fpir", "possible_fpir"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {value}")
        if self.possible_fpir < self.match_fpir:
            raise ValueError("possible_fpir must be at least match_fpir (possible is looser)")


@dataclass(frozen=True)
class Identification:
    decision: Decision
    score: float
    # The estimated FPIR at this score over this gallery: how often a search for someone not
    # enrolled would score this high against some reference.
    estimated_fpir: float
    match_threshold: float
    possible_threshold: float


def decide(
    calibration: ScoreCalibration,
    points: OperatingPoints,
    score: float,
    quality: float,
    references: int,
) -> Identification:
    """The decision for one candidate person whose best reference scored ``score``."""
    t_match = calibration.threshold(points.match_fpir, quality, references)
    t_possible = calibration.threshold(points.possible_fpir, quality, references)
    if score >= t_match and quality >= points.min_match_quality:
        decision = Decision.MATCH
    elif score >= t_possible:
        decision = Decision.POSSIBLE
    else:
        decision = Decision.UNKNOWN
    return Identification(
        decision=decision,
        score=score,
        estimated_fpir=calibration.fpir(score, quality, references),
        match_threshold=t_match,
        possible_threshold=t_possible,
    )
