"""Export a fine-tuned encoder as the embedder serves models: ONNX with a dynamic batch, the
same tensor names as SFace (``data`` -> ``fc1``), and a model card beside it.

The card's ``trained_from`` names the base model; model_files.trained_encoders reads it to
serve the file under its own model id (in-process and in the Triton repository).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from facesearch_server.embedder import model_cards
from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder.face_encoder_info import CALIBRATION_STATUS, calibrate_command
from facesearch_server.embedder.model_export import ONNX_IR_VERSION, _atomic_write, _session
from facesearch_server.embedder.training.sface_torch import SFaceNet

OPSET = 13
EXPORT_MIN_COSINE = 0.9999


def export_encoder(
    net: SFaceNet,
    model_id: str,
    model_dir: Path,
    sample: np.ndarray,
    training: dict[str, Any],
) -> tuple[Path, Path]:
    """Write ``<model_dir>/<model_id>.onnx`` and its card; refuse when onnxruntime's output
    differs from PyTorch's on ``sample`` (N x 3 x 112 x 112, 0..255)."""
    base = mf.SFACE_SPEC
    (inp,), out = base.inputs, base.output
    net = net.eval()
    x = torch.from_numpy(sample[:8].astype(np.float32))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        with torch.no_grad():
            expected = net(x).numpy()
            torch.onnx.export(
                net,
                (x,),
                str(path),
                input_names=[inp.name],
                output_names=[out.name],
                dynamic_axes={inp.name: {0: "batch"}, out.name: {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
        model = onnx.load(str(path))
    model.ir_version = ONNX_IR_VERSION  # onnxruntime 1.31 and Triton refuse newer IR
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    got = _session(data).run(None, {inp.name: x.numpy()})[0]
    cos = (got * expected).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1))
    if got.shape[1] != base.dimension or cos.min() < EXPORT_MIN_COSINE:
        raise RuntimeError(
            f"exported ONNX differs from PyTorch (shape {got.shape}, cosine {cos.min():.6f})"
        )
    onnx_path = model_dir / f"{model_id}.onnx"
    _atomic_write(data, onnx_path)
    card_path = model_cards.card_beside(onnx_path)
    _atomic_write(json_bytes(card(model_id, training, model_dir)), card_path)
    return onnx_path, card_path


def card(model_id: str, training: dict[str, Any], model_dir: Path | None = None) -> dict[str, Any]:
    base = model_cards.shipped_card(mf.SFACE) or {}
    return {
        "model_id": model_id,
        "name": f"SFace fine-tuned with CoReFace ({model_id})",
        "task": base.get("task", "face embedding"),
        "inputs": base.get("inputs"),
        "outputs": base.get("outputs"),
        "trained_from": mf.SFACE,
        "source": "python -m facesearch_server.embedder.training (CoReFace: ArcFace on two "
        "dropout views + contrastive regularisation, METHODS.md section 4)",
        # The base weights are Apache-2.0; what the training images allow is the operator's.
        "licence": "Apache-2.0 (SFace weights); training data terms apply to the result",
        "training": training,
        # No calibration yet: open-set thresholds of the base model do not carry over. The
        # embedder reports this in ListModels (ModelInfo.calibration_pending) until the
        # calibration tool writes one here and removes this key.
        CALIBRATION_STATUS: "pending: not calibrated yet (the base model's thresholds do not "
        "carry over); before open-set identification with it, run "
        + calibrate_command(model_id, str(model_dir) if model_dir else mf.DEFAULT_MODEL_DIR),
    }


def json_bytes(obj: dict[str, Any]) -> bytes:
    import json

    return (json.dumps(obj, indent=1) + "\n").encode()
