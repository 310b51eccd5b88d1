"""Which face in a folder of one person's photos is that person: labels from evidence.

A folder named after a person ("Tony_Blair/") says the person is in its photos, not which face
is theirs: news photos have bystanders. A face gets the folder's label only when the evidence
singles it out:

- with reference faces of the person: the one face of a photo that verifies against them;
- without: the face that recurs across the folder's photos (faces of different photos joined
  when they verify against each other; the group spanning most photos is the person), one per
  photo; a folder of one photo with one face labels that face.

Where the evidence does not single out one face (two faces of a photo verify, one photo with
several faces, nothing recurs), nothing is labelled and the outcome says why, so an archive can
review it instead of storing bystanders under a name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np


class Outcome(Enum):
    LABELLED = "labelled"
    BYSTANDER = "bystander"  # another face of a photo whose person's face was found
    AMBIGUOUS = "ambiguous"  # more than one face of the photo could be the person
    NO_EVIDENCE = "no evidence"  # nothing recurs / nothing verifies


@dataclass
class FolderLabels:
    """Per photo, per face: the outcome; ``references``: (photo, face) of the faces best used
    as the person's reference faces (highest quality first)."""

    outcomes: list[list[Outcome]]
    references: list[tuple[int, int]] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        return sum(o is outcome for photo in self.outcomes for o in photo)


# threshold(quality_a, quality_b) -> the score two faces of these qualities need to verify.
Threshold = Callable[[float, float], float]


def label_folder(
    embeddings: Sequence[np.ndarray],
    qualities: Sequence[np.ndarray],
    threshold: Threshold,
    references: np.ndarray | None = None,
    reference_quality: float = 1.0,
    max_references: int = 3,
) -> FolderLabels:
    """``embeddings[p]``: (faces, d) unit vectors of photo p; ``qualities[p]``: their scores."""
    if references is not None and len(references):
        chosen = _verified(embeddings, qualities, threshold, references, reference_quality)
    else:
        chosen = _recurring(embeddings, qualities, threshold)
    outcomes: list[list[Outcome]] = []
    labelled: list[tuple[float, int, int]] = []
    for p, faces in enumerate(embeddings):
        n = len(faces)
        mine = chosen[p]
        if len(mine) == 1:
            (f,) = mine
            outcomes.append([Outcome.LABELLED if i == f else Outcome.BYSTANDER for i in range(n)])
            labelled.append((float(qualities[p][f]), p, f))
        elif len(mine) > 1:
            outcomes.append(
                [Outcome.AMBIGUOUS if i in mine else Outcome.NO_EVIDENCE for i in range(n)]
            )
        else:
            outcomes.append([Outcome.NO_EVIDENCE] * n)
    labelled.sort(key=lambda t: -t[0])
    return FolderLabels(outcomes, [(p, f) for _, p, f in labelled[:max_references]])


def _verified(
    embeddings: Sequence[np.ndarray],
    qualities: Sequence[np.ndarray],
    threshold: Threshold,
    references: np.ndarray,
    reference_quality: float,
) -> list[set[int]]:
    out = []
    for faces, qs in zip(embeddings, qualities, strict=True):
        if len(faces) == 0:
            out.append(set())
            continue
        best = (faces @ references.T).max(1)
        out.append(
            {i for i in range(len(faces)) if best[i] >= threshold(float(qs[i]), reference_quality)}
        )
    return out


def _recurring(
    embeddings: Sequence[np.ndarray], qualities: Sequence[np.ndarray], threshold: Threshold
) -> list[set[int]]:
    photos = [p for p, faces in enumerate(embeddings) if len(faces)]
    if len(photos) == 1:
        (p,) = photos
        # One photo: its only face is the person; several faces could each be.
        return [set(range(len(f))) if q == p else set() for q, f in enumerate(embeddings)]
    nodes = [(p, i) for p in photos for i in range(len(embeddings[p]))]
    if not nodes:
        return [set() for _ in embeddings]
    vectors = np.concatenate([embeddings[p] for p in photos])
    quality = np.concatenate([np.asarray(qualities[p], np.float32) for p in photos])
    photo_of = np.array([p for p, _ in nodes])
    sims = vectors @ vectors.T
    parent = list(range(len(nodes)))

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a in range(len(nodes)):
        for b in range(a + 1, len(nodes)):
            # Faces of one photo are different people by construction: never join them.
            if photo_of[a] != photo_of[b] and sims[a, b] >= threshold(quality[a], quality[b]):
                parent[root(a)] = root(b)
    groups: dict[int, list[int]] = {}
    for a in range(len(nodes)):
        groups.setdefault(root(a), []).append(a)
    span = {g: len({int(photo_of[a]) for a in members}) for g, members in groups.items()}
    best = max(span.values())
    top = [g for g, s in span.items() if s == best]
    if best < 2 or len(top) > 1:
        # Nothing recurs, or two different faces recur equally often: no evidence for either.
        return [set() for _ in embeddings]
    out: list[set[int]] = [set() for _ in embeddings]
    for a in groups[top[0]]:
        p, i = nodes[a]
        out[p].add(i)
    return out
