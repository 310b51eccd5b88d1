"""Folder labels from evidence (facesearch.person_evidence) on synthetic faces whose identity is
known: the recurring face is labelled, bystanders and ambiguous faces are not."""

from __future__ import annotations

import numpy as np

from facesearch.person_evidence import Outcome, label_folder

D = 64


def person(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(D)
    return v / np.linalg.norm(v)


def photo_of(rng: np.random.Generator, who: list[np.ndarray], noise: float = 0.35) -> np.ndarray:
    faces = np.stack([w + noise * rng.standard_normal(D) / np.sqrt(D) for w in who])
    return faces / np.linalg.norm(faces, axis=1, keepdims=True)


def fixed(score: float):  # type: ignore[no-untyped-def]
    return lambda qa, qb: score


def test_the_recurring_face_is_labelled_and_bystanders_are_not() -> None:
    rng = np.random.default_rng(0)
    me = person(rng)
    photos = [
        photo_of(rng, [me]),
        photo_of(rng, [person(rng), me, person(rng)]),  # me between two bystanders
        photo_of(rng, [me, person(rng)]),
        photo_of(rng, [person(rng)]),  # a photo where the person is not visible
    ]
    quality = [np.full(len(p), 0.8) for p in photos]
    out = label_folder(photos, quality, fixed(0.6))
    assert out.outcomes == [
        [Outcome.LABELLED],
        [Outcome.BYSTANDER, Outcome.LABELLED, Outcome.BYSTANDER],
        [Outcome.LABELLED, Outcome.BYSTANDER],
        [Outcome.NO_EVIDENCE],
    ]
    assert out.count(Outcome.LABELLED) == 3 and len(out.references) == 3


def test_one_photo_with_several_faces_is_ambiguous_and_with_one_face_is_labelled() -> None:
    rng = np.random.default_rng(1)
    crowd = [photo_of(rng, [person(rng), person(rng)])]
    out = label_folder(crowd, [np.full(2, 0.8)], fixed(0.6))
    assert out.outcomes == [[Outcome.AMBIGUOUS, Outcome.AMBIGUOUS]] and not out.references
    alone = [photo_of(rng, [person(rng)])]
    assert label_folder(alone, [np.full(1, 0.8)], fixed(0.6)).outcomes == [[Outcome.LABELLED]]


def test_two_faces_recurring_equally_leave_everything_unlabelled() -> None:
    # Two people together in both photos: which one is the folder's person is not knowable.
    rng = np.random.default_rng(2)
    a, b = person(rng), person(rng)
    photos = [photo_of(rng, [a, b]), photo_of(rng, [b, a])]
    out = label_folder(photos, [np.full(2, 0.8)] * 2, fixed(0.6))
    assert out.count(Outcome.LABELLED) == 0


def test_references_decide_when_the_person_is_known() -> None:
    rng = np.random.default_rng(3)
    me, twin_like = person(rng), person(rng)
    photos = [photo_of(rng, [twin_like, me]), photo_of(rng, [twin_like])]
    refs = photo_of(rng, [me, me])
    out = label_folder(photos, [np.full(2, 0.8), np.full(1, 0.8)], fixed(0.6), references=refs)
    assert out.outcomes == [[Outcome.BYSTANDER, Outcome.LABELLED], [Outcome.NO_EVIDENCE]]


def test_a_higher_threshold_for_poor_faces_keeps_them_unlabelled() -> None:
    rng = np.random.default_rng(4)
    me = person(rng)
    photos = [photo_of(rng, [me]), photo_of(rng, [me]), photo_of(rng, [me, person(rng)])]
    quality = [np.array([0.9]), np.array([0.9]), np.array([0.05, 0.9])]

    def by_quality(qa: float, qb: float) -> float:
        return 0.99 if min(qa, qb) < 0.1 else 0.6

    out = label_folder(photos, quality, by_quality)
    assert out.outcomes[2] == [Outcome.NO_EVIDENCE, Outcome.NO_EVIDENCE]
    assert out.outcomes[0] == [Outcome.LABELLED] and out.outcomes[1] == [Outcome.LABELLED]
