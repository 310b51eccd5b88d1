"""Identification against a collection's reference faces: exact, in memory, per person.

References are few next to a collection's faces (a handful per person), so an exact scan
answers in well under a millisecond per thousand references and never misses a person the way
an approximate index could; the open-set promise counts on every reference being compared.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facesearch_server.retriever.persons.person_store import References
from facesearch_server.runtime.open_set import (
    Identification,
    OperatingPoints,
    ScoreCalibration,
    decide,
)


@dataclass(frozen=True)
class CandidatePerson:
    person_id: str
    score: float
    reference_id: str
    result: Identification


@dataclass(frozen=True)
class FaceAnswer:
    candidates: list[CandidatePerson]
    match_threshold: float
    possible_threshold: float


class ReferenceIndex:
    def __init__(self, refs: References) -> None:
        self.point_ids = refs.point_ids
        self.vectors = refs.vectors
        # References come ordered by person: each person is one contiguous run of rows.
        persons, starts = np.unique(np.array(refs.person_ids, dtype=object), return_index=True)
        order = np.argsort(starts)
        self.persons = [str(p) for p in persons[order]]
        self.starts = starts[order]

    @property
    def references(self) -> int:
        return len(self.point_ids)

    def identify(
        self,
        probe: np.ndarray,
        quality: float,
        max_candidates: int,
        calibration: ScoreCalibration,
        points: OperatingPoints,
    ) -> FaceAnswer:
        m = self.references
        t_match = calibration.threshold(points.match_fpir, quality, max(m, 1))
        t_possible = calibration.threshold(points.possible_fpir, quality, max(m, 1))
        if m == 0:
            return FaceAnswer([], t_match, t_possible)
        scores = self.vectors @ probe.astype(np.float32)
        best = np.maximum.reduceat(scores, self.starts)
        top = np.argsort(-best)[:max_candidates]
        ends = np.append(self.starts[1:], m)
        out = []
        for p in top:
            run = slice(self.starts[p], ends[p])
            ref = self.point_ids[run.start + int(np.argmax(scores[run]))]
            score = float(best[p])
            out.append(
                CandidatePerson(
                    self.persons[p], score, ref, decide(calibration, points, score, quality, m)
                )
            )
        return FaceAnswer(out, t_match, t_possible)
