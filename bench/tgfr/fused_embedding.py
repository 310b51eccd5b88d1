"""The fused embedding (TGFR fusion, issue #14 item 3): moved into the embedder package,
which trains, ships and serves it (facesearch_server.embedder.description_fusion). The
bench measures the shipped ONNX file (``served_probes``), the file both backends serve.

Retrain into the bench cache instead of the package (the package's own command writes the
shipped file and its card):

    python -m bench.tgfr.fused_embedding --data bench/.cache/tgfr/celeba_attributes.npz
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facesearch_server.embedder.description_fusion import names as fn
from facesearch_server.embedder.description_fusion import train as _train
from facesearch_server.embedder.description_fusion.model import (
    DescriptionFusion,
    TrainingSet,
    export_onnx,
    fit,
    fused_probes,
    identity_accuracy,
)
from facesearch_server.embedder.description_fusion.names import FACE_DIM, TEXT_DIM

MODEL_ID = fn.FUSION_MODEL
train_on_training_identities = _train.train_on_training_identities


def served_probes(
    face: np.ndarray, quality: np.ndarray, text: np.ndarray, path: Path = fn.ONNX_FILE
) -> np.ndarray:
    """The fused probes of the shipped ONNX file (what both backends serve)."""
    return fn.run_onnx(path, face, quality, text)[0]


def main(argv: list[str] | None = None) -> None:
    out = Path("bench/.cache/tgfr") / f"{MODEL_ID}.onnx"
    _train.main([*(argv or []), "--out", str(out)] if "--out" not in (argv or []) else argv)


__all__ = [
    "FACE_DIM",
    "TEXT_DIM",
    "DescriptionFusion",
    "TrainingSet",
    "export_onnx",
    "fit",
    "fused_probes",
    "identity_accuracy",
    "served_probes",
    "train_on_training_identities",
]

if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
