"""A face model's score calibration between its proto form (calibration.proto: how the
embedder reports it and a collection stores it) and runtime.open_set's form."""

from __future__ import annotations

import json
import math

from facesearch_contract.v1 import calibration_pb2 as cpb
from facesearch_server.runtime.errors import InvalidArgument
from facesearch_server.runtime.open_set import ImpostorTail, QualityBand, ScoreCalibration
from facesearch_server.runtime.validation import require


def calibration_to_proto(cal: ScoreCalibration) -> cpb.ScoreCalibration:
    return cpb.ScoreCalibration(
        model_id=cal.model_id,
        source_json=json.dumps(cal.source, sort_keys=True),
        fmr_safety_factor=cal.fmr_safety_factor,
        bands=[
            cpb.QualityBand(
                low=b.low,
                high=b.high,
                impostor=cpb.ImpostorTail(
                    grid=b.impostor.grid,
                    log10_survival=b.impostor.log10_survival,
                    threshold=b.impostor.threshold,
                    p_threshold=b.impostor.p_threshold,
                    shape=b.impostor.shape,
                    scale=b.impostor.scale,
                    pairs=b.impostor.pairs,
                ),
                genuine_percentiles=b.genuine_percentiles,
                genuine_pairs=b.genuine_pairs,
                probes=b.probes,
            )
            for b in cal.bands
        ],
    )


def calibration_from_proto(
    cal: cpb.ScoreCalibration, path: str = "settings.calibration"
) -> ScoreCalibration:
    """A calibration message as the decision code uses it; INVALID_ARGUMENT naming the field
    when it cannot be one."""
    require(cal.model_id, f"{path}.model_id")
    if not cal.bands:
        raise InvalidArgument(f"{path}.bands", "is empty: give at least one band")
    bands = []
    for i, b in enumerate(cal.bands):
        where = f"{path}.bands[{i}]"
        t = b.impostor
        if len(t.grid) < 2 or len(t.grid) != len(t.log10_survival):
            raise InvalidArgument(f"{where}.impostor", "grid and log10_survival: 2+ equal lengths")
        if list(t.grid) != sorted(t.grid) or t.scale <= 0 or not 0 < t.p_threshold <= 1:
            raise InvalidArgument(
                f"{where}.impostor", "grid must ascend, scale > 0, p_threshold in (0, 1]"
            )
        if len(b.genuine_percentiles) != 99:
            raise InvalidArgument(f"{where}.genuine_percentiles", "needs the 99 percentiles 1..99")
        if i and b.low != cal.bands[i - 1].high:
            raise InvalidArgument(f"{where}.low", "bands must be contiguous and ascending")
        if not b.low < b.high:
            raise InvalidArgument(where, "low must be below high")
        bands.append(
            QualityBand(
                low=float(b.low),
                high=float(b.high),
                impostor=ImpostorTail(
                    grid=tuple(float(v) for v in t.grid),
                    log10_survival=tuple(float(v) for v in t.log10_survival),
                    threshold=float(t.threshold),
                    p_threshold=float(t.p_threshold),
                    shape=float(t.shape),
                    scale=float(t.scale),
                    pairs=int(t.pairs),
                ),
                genuine_percentiles=tuple(float(v) for v in b.genuine_percentiles),
                genuine_pairs=int(b.genuine_pairs),
                probes=int(b.probes),
            )
        )
    source = json.loads(cal.source_json) if cal.source_json else {}
    factor = cal.fmr_safety_factor or 1.0
    if not (math.isfinite(factor) and factor >= 1.0):
        raise InvalidArgument(f"{path}.fmr_safety_factor", f"is {factor}; it must be >= 1")
    return ScoreCalibration(cal.model_id, tuple(bands), source, factor)
