from facesearch_contract.v1 import calibration_pb2 as _calibration_pb2
from facesearch_contract.v1 import common_pb2 as _common_pb2
from facesearch_contract.v1 import limits_pb2 as _limits_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TextRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TEXT_ROLE_UNSPECIFIED: _ClassVar[TextRole]
    TEXT_ROLE_QUERY: _ClassVar[TextRole]
    TEXT_ROLE_CAPTION: _ClassVar[TextRole]
    TEXT_ROLE_DESCRIPTION: _ClassVar[TextRole]

class ModelKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_KIND_UNSPECIFIED: _ClassVar[ModelKind]
    MODEL_KIND_FACE_DETECTOR: _ClassVar[ModelKind]
    MODEL_KIND_FACE_ENCODER: _ClassVar[ModelKind]
    MODEL_KIND_TEXT_ENCODER: _ClassVar[ModelKind]
    MODEL_KIND_IMAGE_TEXT_ENCODER: _ClassVar[ModelKind]
    MODEL_KIND_FACE_ATTRIBUTES: _ClassVar[ModelKind]
    MODEL_KIND_DESCRIPTION_FUSION: _ClassVar[ModelKind]
TEXT_ROLE_UNSPECIFIED: TextRole
TEXT_ROLE_QUERY: TextRole
TEXT_ROLE_CAPTION: TextRole
TEXT_ROLE_DESCRIPTION: TextRole
MODEL_KIND_UNSPECIFIED: ModelKind
MODEL_KIND_FACE_DETECTOR: ModelKind
MODEL_KIND_FACE_ENCODER: ModelKind
MODEL_KIND_TEXT_ENCODER: ModelKind
MODEL_KIND_IMAGE_TEXT_ENCODER: ModelKind
MODEL_KIND_FACE_ATTRIBUTES: ModelKind
MODEL_KIND_DESCRIPTION_FUSION: ModelKind

class ImageInput(_message.Message):
    __slots__ = ("data", "media_id")
    DATA_FIELD_NUMBER: _ClassVar[int]
    MEDIA_ID_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    media_id: str
    def __init__(self, data: _Optional[bytes] = ..., media_id: _Optional[str] = ...) -> None: ...

class DetectionOptions(_message.Message):
    __slots__ = ("max_faces", "min_face_size", "score_threshold", "return_aligned_crops")
    MAX_FACES_FIELD_NUMBER: _ClassVar[int]
    MIN_FACE_SIZE_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    RETURN_ALIGNED_CROPS_FIELD_NUMBER: _ClassVar[int]
    max_faces: int
    min_face_size: int
    score_threshold: float
    return_aligned_crops: bool
    def __init__(self, max_faces: _Optional[int] = ..., min_face_size: _Optional[int] = ..., score_threshold: _Optional[float] = ..., return_aligned_crops: _Optional[bool] = ...) -> None: ...

class FaceQuality(_message.Message):
    __slots__ = ("score", "face_size", "sharpness")
    SCORE_FIELD_NUMBER: _ClassVar[int]
    FACE_SIZE_FIELD_NUMBER: _ClassVar[int]
    SHARPNESS_FIELD_NUMBER: _ClassVar[int]
    score: float
    face_size: float
    sharpness: float
    def __init__(self, score: _Optional[float] = ..., face_size: _Optional[float] = ..., sharpness: _Optional[float] = ...) -> None: ...

class Face(_message.Message):
    __slots__ = ("box", "landmarks", "detection_score", "quality", "embedding", "model_id", "aligned_crop", "attributes")
    BOX_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    DETECTION_SCORE_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    ALIGNED_CROP_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    box: _common_pb2.BoundingBox
    landmarks: _containers.RepeatedCompositeFieldContainer[_common_pb2.Point2D]
    detection_score: float
    quality: FaceQuality
    embedding: _common_pb2.Vector
    model_id: str
    aligned_crop: bytes
    attributes: FaceAttributes
    def __init__(self, box: _Optional[_Union[_common_pb2.BoundingBox, _Mapping]] = ..., landmarks: _Optional[_Iterable[_Union[_common_pb2.Point2D, _Mapping]]] = ..., detection_score: _Optional[float] = ..., quality: _Optional[_Union[FaceQuality, _Mapping]] = ..., embedding: _Optional[_Union[_common_pb2.Vector, _Mapping]] = ..., model_id: _Optional[str] = ..., aligned_crop: _Optional[bytes] = ..., attributes: _Optional[_Union[FaceAttributes, _Mapping]] = ...) -> None: ...

class FaceAttributes(_message.Message):
    __slots__ = ("model_id", "probabilities", "vector")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    vector: _common_pb2.Vector
    def __init__(self, model_id: _Optional[str] = ..., probabilities: _Optional[_Iterable[float]] = ..., vector: _Optional[_Union[_common_pb2.Vector, _Mapping]] = ...) -> None: ...

class ImageResult(_message.Message):
    __slots__ = ("media_id", "faces", "width", "height", "error_code", "error_message", "index", "scene", "scene_model_id")
    MEDIA_ID_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SCENE_FIELD_NUMBER: _ClassVar[int]
    SCENE_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    media_id: str
    faces: _containers.RepeatedCompositeFieldContainer[Face]
    width: int
    height: int
    error_code: int
    error_message: str
    index: int
    scene: _common_pb2.Vector
    scene_model_id: str
    def __init__(self, media_id: _Optional[str] = ..., faces: _Optional[_Iterable[_Union[Face, _Mapping]]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., error_code: _Optional[int] = ..., error_message: _Optional[str] = ..., index: _Optional[int] = ..., scene: _Optional[_Union[_common_pb2.Vector, _Mapping]] = ..., scene_model_id: _Optional[str] = ...) -> None: ...

class EmbedImagesRequest(_message.Message):
    __slots__ = ("images", "options", "model_id", "with_scene")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    WITH_SCENE_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[ImageInput]
    options: DetectionOptions
    model_id: str
    with_scene: bool
    def __init__(self, images: _Optional[_Iterable[_Union[ImageInput, _Mapping]]] = ..., options: _Optional[_Union[DetectionOptions, _Mapping]] = ..., model_id: _Optional[str] = ..., with_scene: _Optional[bool] = ...) -> None: ...

class EmbedImagesResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ImageResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ImageResult, _Mapping]]] = ...) -> None: ...

class FaceCrop(_message.Message):
    __slots__ = ("data", "media_id")
    DATA_FIELD_NUMBER: _ClassVar[int]
    MEDIA_ID_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    media_id: str
    def __init__(self, data: _Optional[bytes] = ..., media_id: _Optional[str] = ...) -> None: ...

class EmbedFacesRequest(_message.Message):
    __slots__ = ("crops", "model_id")
    CROPS_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    crops: _containers.RepeatedCompositeFieldContainer[FaceCrop]
    model_id: str
    def __init__(self, crops: _Optional[_Iterable[_Union[FaceCrop, _Mapping]]] = ..., model_id: _Optional[str] = ...) -> None: ...

class EmbedFacesResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ImageResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ImageResult, _Mapping]]] = ...) -> None: ...

class EmbedTextRequest(_message.Message):
    __slots__ = ("texts", "role", "model_id", "identities")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    role: TextRole
    model_id: str
    identities: _containers.RepeatedCompositeFieldContainer[_common_pb2.Vector]
    def __init__(self, texts: _Optional[_Iterable[str]] = ..., role: _Optional[_Union[TextRole, str]] = ..., model_id: _Optional[str] = ..., identities: _Optional[_Iterable[_Union[_common_pb2.Vector, _Mapping]]] = ...) -> None: ...

class EmbedTextResponse(_message.Message):
    __slots__ = ("embeddings", "model_id", "descriptions")
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    embeddings: _containers.RepeatedCompositeFieldContainer[_common_pb2.Vector]
    model_id: str
    descriptions: _containers.RepeatedCompositeFieldContainer[DescriptionEvidence]
    def __init__(self, embeddings: _Optional[_Iterable[_Union[_common_pb2.Vector, _Mapping]]] = ..., model_id: _Optional[str] = ..., descriptions: _Optional[_Iterable[_Union[DescriptionEvidence, _Mapping]]] = ...) -> None: ...

class AttributeEvidence(_message.Message):
    __slots__ = ("name", "present", "confidence", "phrase")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    PHRASE_FIELD_NUMBER: _ClassVar[int]
    name: str
    present: bool
    confidence: float
    phrase: str
    def __init__(self, name: _Optional[str] = ..., present: _Optional[bool] = ..., confidence: _Optional[float] = ..., phrase: _Optional[str] = ...) -> None: ...

class DescriptionEvidence(_message.Message):
    __slots__ = ("evidence", "attribute_model_id", "query_vector", "prior_score")
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTE_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    QUERY_VECTOR_FIELD_NUMBER: _ClassVar[int]
    PRIOR_SCORE_FIELD_NUMBER: _ClassVar[int]
    evidence: _containers.RepeatedCompositeFieldContainer[AttributeEvidence]
    attribute_model_id: str
    query_vector: _common_pb2.Vector
    prior_score: float
    def __init__(self, evidence: _Optional[_Iterable[_Union[AttributeEvidence, _Mapping]]] = ..., attribute_model_id: _Optional[str] = ..., query_vector: _Optional[_Union[_common_pb2.Vector, _Mapping]] = ..., prior_score: _Optional[float] = ...) -> None: ...

class FuseDescriptionRequest(_message.Message):
    __slots__ = ("embedding", "face_model_id", "quality", "description", "model_id")
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    FACE_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    embedding: _common_pb2.Vector
    face_model_id: str
    quality: float
    description: str
    model_id: str
    def __init__(self, embedding: _Optional[_Union[_common_pb2.Vector, _Mapping]] = ..., face_model_id: _Optional[str] = ..., quality: _Optional[float] = ..., description: _Optional[str] = ..., model_id: _Optional[str] = ...) -> None: ...

class FuseDescriptionResponse(_message.Message):
    __slots__ = ("fused", "description_weight", "model_id", "face_model_id", "text_model_id")
    FUSED_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    FACE_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    fused: _common_pb2.Vector
    description_weight: float
    model_id: str
    face_model_id: str
    text_model_id: str
    def __init__(self, fused: _Optional[_Union[_common_pb2.Vector, _Mapping]] = ..., description_weight: _Optional[float] = ..., model_id: _Optional[str] = ..., face_model_id: _Optional[str] = ..., text_model_id: _Optional[str] = ...) -> None: ...

class EmbedStreamRequest(_message.Message):
    __slots__ = ("image", "options", "model_id", "with_scene")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    WITH_SCENE_FIELD_NUMBER: _ClassVar[int]
    image: ImageInput
    options: DetectionOptions
    model_id: str
    with_scene: bool
    def __init__(self, image: _Optional[_Union[ImageInput, _Mapping]] = ..., options: _Optional[_Union[DetectionOptions, _Mapping]] = ..., model_id: _Optional[str] = ..., with_scene: _Optional[bool] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("model_id", "kind", "dimension", "backend", "ready", "is_default", "max_batch", "calibration", "card_json", "attribute_names", "trained_from", "calibration_pending")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    CARD_JSON_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTE_NAMES_FIELD_NUMBER: _ClassVar[int]
    TRAINED_FROM_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_PENDING_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    kind: ModelKind
    dimension: int
    backend: str
    ready: bool
    is_default: bool
    max_batch: int
    calibration: _calibration_pb2.ScoreCalibration
    card_json: str
    attribute_names: _containers.RepeatedScalarFieldContainer[str]
    trained_from: str
    calibration_pending: str
    def __init__(self, model_id: _Optional[str] = ..., kind: _Optional[_Union[ModelKind, str]] = ..., dimension: _Optional[int] = ..., backend: _Optional[str] = ..., ready: _Optional[bool] = ..., is_default: _Optional[bool] = ..., max_batch: _Optional[int] = ..., calibration: _Optional[_Union[_calibration_pb2.ScoreCalibration, _Mapping]] = ..., card_json: _Optional[str] = ..., attribute_names: _Optional[_Iterable[str]] = ..., trained_from: _Optional[str] = ..., calibration_pending: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...
