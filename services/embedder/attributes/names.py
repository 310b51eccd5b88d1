"""The attributes the attribute model predicts, and how each reads from CelebA's 40 labels.

Their order is the order of ``FaceAttributes.probabilities`` (embedder.proto) and of the
attribute vector stored with each face; a model id names one order, so it never changes under a
model id.
"""

from __future__ import annotations

import numpy as np

ATTRIBUTE_MODEL = "celeba-attr-sface-v1"

# name -> (CelebA column, whether the column is negated). CelebA has no sunglasses label
# (Eyeglasses covers both) and only one age label (Young), so the age group is young/older.
ATTRIBUTES: dict[str, tuple[str, bool]] = {
    "male": ("Male", False),
    "young": ("Young", False),
    "beard": ("No_Beard", True),
    "mustache": ("Mustache", False),
    "goatee": ("Goatee", False),
    "eyeglasses": ("Eyeglasses", False),
    "bald": ("Bald", False),
    "black_hair": ("Black_Hair", False),
    "blond_hair": ("Blond_Hair", False),
    "brown_hair": ("Brown_Hair", False),
    "gray_hair": ("Gray_Hair", False),
    "hat": ("Wearing_Hat", False),
    "heavy_makeup": ("Heavy_Makeup", False),
    "smiling": ("Smiling", False),
}
NAMES: tuple[str, ...] = tuple(ATTRIBUTES)

# Probabilities are clipped here before their logs are stored: one confident mistake of the
# model must not veto a face (log 0.02 = -3.9 at worst per attribute).
P_FLOOR = 0.02


def targets(labels: np.ndarray, label_names: list[str]) -> np.ndarray:
    """(n, 40) CelebA +1/-1 labels -> (n, len(NAMES)) 0/1 targets."""
    cols = []
    for column, negated in ATTRIBUTES.values():
        present = labels[:, label_names.index(column)] > 0
        cols.append(~present if negated else present)
    return np.stack(cols, axis=1).astype(np.int64)


def attribute_vector(probabilities: np.ndarray) -> np.ndarray:
    """(..., n) probabilities -> (..., 2n) [log p, log (1 - p)]: what a face stores, so that the
    inner product with a description's evidence weights is the evidence's log-likelihood."""
    p = np.clip(probabilities, P_FLOOR, 1 - P_FLOOR)
    return np.concatenate([np.log(p), np.log1p(-p)], axis=-1).astype(np.float32)
