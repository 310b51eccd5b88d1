"""A posterior over which face is the person in mind, fed by the heads' scores.

FaIRCoP's cluster score (scoring.py) ranks by where a face falls relative to the positive and
negative centroids. A wrong "similar" drags the positive centroid; under 10 % flipped answers
most early positives are wrong (2 % of faces are truly similar), and the session is steered by
them until enough rejections outweigh them. Here every answer is instead one piece of evidence
about the target t, PicHunter's user model with a head's cosines in place of the
embedding's: with c = cos(f(x), f(l)) between a candidate target x and a labelled face l in
head space (f the user's lasting head, below),

    P(l answered "similar" | t = x) = eps + (1 - 2 eps) * sigmoid((c - tau) / slope)

and the near-miss / nothing-like answers as in answer_model.py. The log posterior of x (flat
prior) is the sum over every answer of the session. A wrong answer is not a veto: far from the
target a flipped "similar" costs about (c - tau) / slope, a few nats, graded by how far the
face is, and the many consistent answers outvote it. eps caps what one answer can cost at
log(1 / eps). It is small (0.01): a large floor (0.1, the answer model's) flattens the evidence
of every face far from a labelled one to the same log eps, and that graded evidence is what
ranks well under a per-user likeness (bench dev runs: eps 0.05 lost 5 rounds of median
there); without a floor (eps 0) two or three wrong "similar" answers pull the peak onto faces
moderately close to all of them (tests/personalizer/test_target_posterior.py).

Whose cosines: the head the session started from (the user's lasting head, ``likeness =
"lasting"``), not the head this session trains: SCLoss reshapes the session head around this
session's answers, wrong ones included, and on its cosines the likelihood lost most of its gain
under wrong answers (bench dev runs: 10 % flipped, median 43.5 rounds against 19.5). The
session head still ranks, through the cluster score added to the posterior.

The posterior is a function of the labelled faces only, so the service keeps no extra state:
each round it is evaluated on the candidates the retriever returns. Where it peaks:
- far from a positive, log sigmoid is nearly linear in c, so the posterior rises along
  L^T sum_p z_p (minus the small slope the negatives add): one inner-product query;
- near positives it saturates, so the peak sits among the positives' neighbours: one query per
  positive, for the ``positive_queries`` positives the posterior ranks highest.
The candidates of those queries are rescored exactly with the posterior, plus ``cluster_weight``
times the FaIRCoP cluster score (0 = the posterior alone), which breaks the posterior's ties
among faces near the same positives in favour of the head's separation of the clusters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facesearch_server.personalizer.answer_model import AnswerModel, log_likelihood
from facesearch_server.personalizer.head import Head


@dataclass(frozen=True)
class PosteriorParams:
    # eps: the floor of the answer model (0 = none; PicHunter's logistic).
    wrong_share: float = 0.01
    # Weight of the cluster score (scoring.rescore) added to the log posterior.
    cluster_weight: float = 1.0
    # Per-positive retriever queries (the likeliest positives first) and their hits.
    positive_queries: int = 8
    per_positive_top: int = 32
    # Whose cosines the likelihood uses: "lasting" (the head the session started from, the
    # user's lasting notion of likeness; identity for a new user) or "session" (the head this
    # session trains, which SCLoss pulls and pushes around this session's answers).
    likeness: str = "lasting"
    # Temperature (nats) of the head's training weights from the posterior (label_weights);
    # 0 = the head trains on corroborated positives (answer_model.corroboration) as before.
    train_temperature: float = 0.0


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _model(answers: AnswerModel, p: PosteriorParams) -> AnswerModel:
    return AnswerModel(
        threshold=answers.threshold,
        same_person_threshold=answers.same_person_threshold,
        unlike_threshold=answers.unlike_threshold,
        slope=answers.slope,
        wrong_share=p.wrong_share,
    )


def log_posterior(
    likeness: Head,
    vectors: np.ndarray,
    x_labelled: np.ndarray | None,
    codes: np.ndarray | None,
    answers: AnswerModel,
    p: PosteriorParams = PosteriorParams(),
) -> np.ndarray:
    """log P(t = x | answers) + const for face vectors (n, d) -> (n,): 0 without answers.
    ``x_labelled``: the labelled faces' embedding vectors, ``codes`` their answers; cosines in
    the space of the head ``likeness``."""
    if x_labelled is None or codes is None or not len(codes) or not len(vectors):
        return np.zeros(len(vectors), np.float64)
    z = _unit_rows(likeness.apply(vectors))
    return log_likelihood(z, _unit_rows(likeness.apply(x_labelled)), codes, _model(answers, p))


def queries(
    likeness: Head,
    x_labelled: np.ndarray,
    codes: np.ndarray,
    answers: AnswerModel,
    p: PosteriorParams = PosteriorParams(),
) -> list[tuple[np.ndarray, int]]:
    """Retriever queries (unit vector in embedding space, top) that fetch the posterior's peak:
    its linear direction, then the head-space directions of the likeliest positives."""
    codes = np.asarray(codes)
    pos = np.flatnonzero(codes > 0)
    if not len(pos):
        return []
    m = _model(answers, p)
    z_labelled = _unit_rows(likeness.apply(x_labelled))
    # d log P / d c at the gallery's typical cosine (about 0: most faces are unlike each
    # other): (1 - s) / slope for a "similar", -s / slope for a "dissimilar", s = the logistic.
    s = 1.0 / (1.0 + np.exp(-np.clip(-m.threshold / m.slope, -60, 60)))
    grad = np.where(codes > 0, 1.0 - s, -s)
    direction = (grad[:, None] * np.asarray(z_labelled, np.float64)).sum(0)
    out: list[tuple[np.ndarray, int]] = []
    q = likeness.weight.T.astype(np.float64) @ direction
    if np.linalg.norm(q) > 0:
        out.append(((q / np.linalg.norm(q)).astype(np.float32), p.per_positive_top))
    if p.positive_queries:
        zp = z_labelled[pos]
        ll = log_likelihood(zp, z_labelled, codes, m)
        for j in np.argsort(-ll, kind="stable")[: p.positive_queries]:
            q = likeness.weight.T @ zp[j]
            out.append(
                ((q / max(float(np.linalg.norm(q)), 1e-12)).astype(np.float32), p.per_positive_top)
            )
    return out


def label_weights(
    likeness: Head,
    x_labelled: np.ndarray,
    codes: np.ndarray,
    answers: AnswerModel,
    p: PosteriorParams = PosteriorParams(),
) -> np.ndarray:
    """Training weight of each positive (positives in ``codes`` order), in (0, 1]:
    exp((log P(t = l) - max over positives) / T). A positive where the other answers put the
    person keeps 1; one they contradict (a flipped "similar" among rejected faces) weighs
    little in SCLoss, so it neither drags the positive cluster nor is pulled into it."""
    codes = np.asarray(codes)
    pos = np.flatnonzero(codes > 0)
    if not len(pos):
        return np.zeros(0)
    z_labelled = _unit_rows(likeness.apply(x_labelled))
    ll = log_likelihood(z_labelled[pos], z_labelled, codes, _model(answers, p))
    return np.exp((ll - ll.max()) / max(p.train_temperature, 1e-6))
