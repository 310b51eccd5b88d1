"""Model cards: what each model is, its tensors, its licence and, for face encoders, its
open-set score calibration. One JSON file per model id in ``model_cards/``, shipped in the
package, copied beside the ONNX file at export and into the Triton model repository, so a model
change brings its own thresholds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from facesearch_server.runtime.open_set import ScoreCalibration

CARDS_DIR = Path(__file__).resolve().parent / "model_cards"
CARD_SUFFIX = ".card.json"


def card_path(model_id: str) -> Path:
    return CARDS_DIR / f"{model_id}.json"


def load_card(path: Path) -> dict[str, Any]:
    card = json.loads(path.read_text())
    if not isinstance(card, dict) or "model_id" not in card:
        raise ValueError(f"{path}: a model card is a JSON object with at least model_id")
    return card


def shipped_card(model_id: str) -> dict[str, Any] | None:
    path = card_path(model_id)
    return load_card(path) if path.exists() else None


def card_for(model_id: str, model_file: Path | None = None) -> dict[str, Any] | None:
    """The card the embedder serves for a model: the one beside its model file (a model dir
    brings its own), else the one this package ships."""
    if model_file is not None:
        beside = card_beside(model_file)
        if beside.exists():
            return load_card(beside)
    return shipped_card(model_id)


def calibration_of(card: dict[str, Any] | None) -> ScoreCalibration | None:
    if not card or "calibration" not in card:
        return None
    return ScoreCalibration.from_dict({"model_id": card["model_id"], **card["calibration"]})


def card_beside(model_file: Path) -> Path:
    """Where a model file's card lives next to it: ``sface-2021dec.onnx`` ->
    ``sface-2021dec.card.json``."""
    return model_file.with_name(model_file.stem + CARD_SUFFIX)
