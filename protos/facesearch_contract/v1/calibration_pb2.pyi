from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImpostorTail(_message.Message):
    __slots__ = ("grid", "log10_survival", "threshold", "p_threshold", "shape", "scale", "pairs")
    GRID_FIELD_NUMBER: _ClassVar[int]
    LOG10_SURVIVAL_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    P_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    grid: _containers.RepeatedScalarFieldContainer[float]
    log10_survival: _containers.RepeatedScalarFieldContainer[float]
    threshold: float
    p_threshold: float
    shape: float
    scale: float
    pairs: int
    def __init__(self, grid: _Optional[_Iterable[float]] = ..., log10_survival: _Optional[_Iterable[float]] = ..., threshold: _Optional[float] = ..., p_threshold: _Optional[float] = ..., shape: _Optional[float] = ..., scale: _Optional[float] = ..., pairs: _Optional[int] = ...) -> None: ...

class QualityBand(_message.Message):
    __slots__ = ("low", "high", "impostor", "genuine_percentiles", "genuine_pairs", "probes")
    LOW_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    IMPOSTOR_FIELD_NUMBER: _ClassVar[int]
    GENUINE_PERCENTILES_FIELD_NUMBER: _ClassVar[int]
    GENUINE_PAIRS_FIELD_NUMBER: _ClassVar[int]
    PROBES_FIELD_NUMBER: _ClassVar[int]
    low: float
    high: float
    impostor: ImpostorTail
    genuine_percentiles: _containers.RepeatedScalarFieldContainer[float]
    genuine_pairs: int
    probes: int
    def __init__(self, low: _Optional[float] = ..., high: _Optional[float] = ..., impostor: _Optional[_Union[ImpostorTail, _Mapping]] = ..., genuine_percentiles: _Optional[_Iterable[float]] = ..., genuine_pairs: _Optional[int] = ..., probes: _Optional[int] = ...) -> None: ...

class ScoreCalibration(_message.Message):
    __slots__ = ("model_id", "bands", "source_json", "fmr_safety_factor")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    BANDS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_JSON_FIELD_NUMBER: _ClassVar[int]
    FMR_SAFETY_FACTOR_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    bands: _containers.RepeatedCompositeFieldContainer[QualityBand]
    source_json: str
    fmr_safety_factor: float
    def __init__(self, model_id: _Optional[str] = ..., bands: _Optional[_Iterable[_Union[QualityBand, _Mapping]]] = ..., source_json: _Optional[str] = ..., fmr_safety_factor: _Optional[float] = ...) -> None: ...
