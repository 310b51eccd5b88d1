"""What ListModels says about a face encoder: shipped or fine-tuned here, its card's open-set
calibration, or why it has none.

A fine-tuned model never borrows its base model's calibration: its scores are distributed
differently, so thresholds measured on SFace would give wrong false-match rates. Until the
calibration tool has run on it (``calibration --model ID``), ListModels leaves
``calibration`` unset and says so in ``calibration_pending``.
"""

from __future__ import annotations

import json
from typing import Any

from facesearch_contract.v1 import embedder_pb2 as pb
from facesearch_server.embedder import model_cards
from facesearch_server.embedder import model_files as mf
from facesearch_server.runtime.calibration_proto import calibration_to_proto

# The card key the training export writes and the calibration tool removes (training/export.py,
# calibration/__main__.py).
CALIBRATION_STATUS = "calibration_status"


def calibrate_command(model_id: str, model_dir: str = "MODEL_DIR") -> str:
    """The command that calibrates ``model_id`` and writes the result into its card."""
    return (
        f"python -m facesearch_server.embedder.calibration --model {model_id} "
        f"--model-dir {model_dir} --data LABELLED_FOLDER"
    )


def calibration_pending(model_id: str, card: dict[str, Any] | None) -> str:
    """Why a face encoder has no calibration, with the command that makes one; "" when its
    card has one."""
    if card and "calibration" in card:
        return ""
    status = str(card.get(CALIBRATION_STATUS, "")) if card else ""
    return status or (
        f"not calibrated: its model card has no calibration; run {calibrate_command(model_id)}"
    )


def face_encoder_info(
    spec: mf.EncoderSpec,
    card: dict[str, Any] | None,
    *,
    backend: str,
    ready: bool,
    is_default: bool,
    max_batch: int,
) -> pb.ModelInfo:
    calibration = model_cards.calibration_of(card)
    return pb.ModelInfo(
        model_id=spec.model_id,
        kind=pb.MODEL_KIND_FACE_ENCODER,
        dimension=spec.dimension,
        backend=backend,
        ready=ready,
        is_default=is_default,
        max_batch=max_batch,
        calibration=calibration_to_proto(calibration) if calibration else None,
        card_json=json.dumps(card) if card else "",
        trained_from=str(card.get("trained_from", "")) if card else "",
        calibration_pending=calibration_pending(spec.model_id, card),
    )
