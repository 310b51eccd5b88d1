"""The bench's own parts: descriptions written from labels, rank-1 with ties, the identity
bootstrap, and photo degradations."""

from __future__ import annotations

import numpy as np

from bench.tgfr.bench_tgfr import balanced_accuracy, bootstrap_ci, rank1
from bench.tgfr.descriptions import describe
from bench.tgfr.whole_photo import degrade_photo

COLUMNS = (
    "Male Young No_Beard Mustache Goatee Eyeglasses Bald Black_Hair Blond_Hair Brown_Hair "
    "Gray_Hair Wearing_Hat Heavy_Makeup Smiling Wavy_Hair Big_Nose Bangs"
).split()


def labels(**present: int) -> dict[str, int]:
    out = dict.fromkeys(COLUMNS, -1)
    out["No_Beard"] = 1
    out.update(present)
    return out


def test_a_description_names_what_the_labels_say() -> None:
    text = describe(labels(Male=1, Eyeglasses=1, Smiling=1), np.random.default_rng(0))
    assert "eyeglasses" in text and "smiling" in text and "no beard" in text
    assert any(w in text for w in ("man", "gentleman", "guy"))
    assert "older" in text or "middle-aged" in text
    woman = describe(labels(Young=1, Blond_Hair=1), np.random.default_rng(0))
    assert "She is young" in woman and "blond hair" in woman and "beard" not in woman


def test_rank1_counts_ties_as_a_fraction() -> None:
    scores = np.array([[0.9, 0.9, 0.1], [0.2, 0.8, 0.1]])
    correct = np.array([[True, False, False], [True, False, False]])
    assert rank1(scores, correct).tolist() == [0.5, 0.0]


def test_balanced_accuracy_and_the_identity_bootstrap() -> None:
    y = np.array([1, 1, 0, 0])
    assert balanced_accuracy(y, np.array([0.9, 0.2, 0.1, 0.1]), 0.5) == 0.75
    assert np.isnan(balanced_accuracy(np.ones(3), np.ones(3), 0.5))
    values = np.array([1.0, 1.0, 0.0, 0.0])
    lo, hi = bootstrap_ci(values, np.array(["a", "a", "b", "b"]), lambda r: values[r].mean())
    assert lo == 0.0 and hi == 1.0  # two identities: resampling whole people, not probes


def test_a_photo_is_shrunk_so_its_face_has_the_asked_width() -> None:
    photo = np.zeros((400, 600, 3), np.uint8)
    assert degrade_photo(photo, "16px", face_width=160.0).shape[:2] == (40, 60)
    assert degrade_photo(photo, "jpeg10", face_width=160.0).shape == photo.shape
