"""The calibration fit's safety factor and the labelled set's corrections, on synthetic and
on named data whose answer is known."""

from __future__ import annotations

import numpy as np

from facesearch_server.embedder.calibration import label_errors
from facesearch_server.embedder.calibration.dataset import EmbeddedSet
from facesearch_server.embedder.calibration.fit import fit_calibration
from facesearch_server.embedder.calibration.safety_factor import half_of

D = 64


def synthetic_set(lookalikes_in_half: int | None, seed: int = 0) -> EmbeddedSet:
    """300 people x 4 photos; with ``lookalikes_in_half`` set, that half's people come in
    pairs whose faces are close (cosine ~0.5 between the pair's centres)."""
    rng = np.random.default_rng(seed)
    people = [f"p{i:03d}" for i in range(300)]
    centres = {p: rng.standard_normal(D) for p in people}
    if lookalikes_in_half is not None:
        twins = [p for p in people if half_of(p) == lookalikes_in_half]
        for a, b in zip(twins[::2], twins[1::2], strict=False):
            centres[b] = centres[a] + rng.standard_normal(D)
    rows, ids = [], []
    for p in people:
        c = centres[p] / np.linalg.norm(centres[p])
        for _ in range(4):
            v = c + 0.9 * rng.standard_normal(D) / np.sqrt(D)
            rows.append(v / np.linalg.norm(v))
            ids.append(p)
    n = len(rows)
    return EmbeddedSet(
        paths=np.array([f"{p}/{i}.jpg" for i, p in enumerate(ids)]),
        identities=np.array(ids),
        embeddings={"clean": np.array(rows, np.float32)},
        quality={"clean": np.full(n, 0.9, np.float32)},
        face_size={"clean": np.full(n, 100.0, np.float32)},
        detection={"clean": np.full(n, 0.9, np.float32)},
    )


def fit(data: EmbeddedSet):  # type: ignore[no-untyped-def]
    return fit_calibration(data, set(map(str, data.identities)), "m", band_edges=(0.0, 1.0))


def test_a_half_with_lookalikes_raises_the_safety_factor() -> None:
    plain = fit(synthetic_set(None))
    assert 1.0 <= plain.fmr_safety_factor < 1.5  # halves alike: little to correct
    skewed = fit(synthetic_set(lookalikes_in_half=1))
    # A curve fitted without the look-alikes under-estimates the half that has them.
    assert skewed.fmr_safety_factor > 1.5
    assert skewed.threshold(1e-3, 0.9, 100) > plain.threshold(1e-3, 0.9, 100)
    seen = skewed.source["fmr_safety_cv"]
    assert len(seen) == 6 and max(r["ratio"] for r in seen) >= skewed.fmr_safety_factor


def test_known_label_errors_are_corrected_on_load() -> None:
    paths = np.array(
        [
            "lfw/Recep_Tayyip_Erdogan/Recep_Tayyip_Erdogan_0004.jpg",
            "lfw/Recep_Tayyip_Erdogan/Recep_Tayyip_Erdogan_0001.jpg",
            "lfw/Sepp_Blatter/Sepp_Blatter_0001.jpg",
        ]
    )
    labels = np.array(["Recep_Tayyip_Erdogan", "Recep_Tayyip_Erdogan", "Sepp_Blatter"])
    fixed = label_errors.corrected(paths, labels)
    assert fixed.tolist() == ["Abdullah_Gul", "Recep_Tayyip_Erdogan", "Joseph_Blatter"]
    assert labels[0] == "Recep_Tayyip_Erdogan"  # the input is left alone
