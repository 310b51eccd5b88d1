"""What the description fusion model is bound to: its id, the face and text encoders whose
vectors it reads, and its tensors. No torch here: the servicer and model table import it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

FUSION_MODEL = "tgfr-fusion-sface-minilm-v1"
# The encoders it was trained on: a vector of any other face or text model means nothing to it.
FACE_MODEL = "sface-2021dec"
TEXT_MODEL = "minilm-l6-v2"
FACE_DIM = 128
TEXT_DIM = 384

# Inputs: the unit face embedding (n, 128), its quality (n, 1) in 0..1, the unit description
# embedding (n, 384). One output (n, 129), as every served model has one: the unit fused
# probe (columns 0..127) and the description's weight w >= 0 (column 128), so a caller can
# say how much the description moved the probe.
INPUTS = (("embedding", FACE_DIM), ("quality", 1), ("text", TEXT_DIM))
OUTPUT = "fused"
OUTPUT_DIM = FACE_DIM + 1

PACKAGE_DIR = Path(__file__).resolve().parent
ONNX_FILE = PACKAGE_DIR / f"{FUSION_MODEL}.onnx"


def run_onnx(
    path: Path, face: np.ndarray, quality: np.ndarray, text: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The ONNX file's fused probes (n, 128) and description weights (n,), on onnxruntime's
    CPU provider (what the training's evaluation and the bench measure: the served file)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {
        "embedding": np.asarray(face, np.float32),
        "quality": np.asarray(quality, np.float32).reshape(-1, 1),
        "text": np.asarray(text, np.float32),
    }
    return split_output(session.run([OUTPUT], feeds)[0])


def split_output(out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 129) -> the fused probes (n, 128) and the description weights (n,)."""
    return out[:, :FACE_DIM], out[:, FACE_DIM]
