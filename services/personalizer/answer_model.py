"""What a user's answers say about where the person in mind is: a noise-tolerant answer model.

FaIRCoP's clusters trust every label, so a few wrong "similar" clicks (most of the "similar"
answers of early rounds, when 10 % of answers are flipped and 2 % of faces are truly similar)
move the positive centroid somewhere the person is not. Here every answer is a piece of
evidence about the target t, in the manner of PicHunter's user model, with a floor for wrong
answers. With c = cos(f(x), f(l)) in head space between a candidate target x and a labelled
face l, and

    like(c, tau) = eps + (1 - 2 eps) * sigmoid((c - tau) / slope)

(the chance the user calls l similar when x is the person; eps = the share of answers assumed
wrong), each label adds to log P(answers | t = x):

    SIMILAR                 log like(c, tau)
    DISSIMILAR              log (1 - like(c, tau))
    NOT_PERSON_BUT_SIMILAR  log like(c, tau) + log (1 - like(c, tau_same))   (near, not them)
    NOT_PERSON_NOTHING_LIKE log (1 - like(c, tau_unlike)) + log (1 - like(c, tau))
                                                                   (rules out more, and harder)

The floor bounds what one answer can cost a candidate (log eps), so a wrong answer is outvoted
by the consistent ones instead of ruling out the target. The sum is the log posterior of x up to
a constant (flat prior); scoring.py adds it to the cluster score, and ``credibility`` turns it
into per-label weights: a positive far from where the other answers put the person counts less
in the centroid, the nearest-positive term and SCLoss.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

# Label codes as sessions store them (session_store.Session.labels): sign = cluster.
SIMILAR = 1
DISSIMILAR = -1
NEAR_MISS = 2  # "not this person, but similar"
NOTHING_LIKE = -2  # "not this person, nothing like them"
CODES = (SIMILAR, DISSIMILAR, NEAR_MISS, NOTHING_LIKE)


@dataclass(frozen=True)
class AnswerModel:
    # Cosines in head space. Defaults from the SFace gallery of bench/personalize (10,285
    # faces): tau ~ the 98th percentile of pair cosines (what "looks alike" means to a user
    # who calls 2 % of faces similar), tau_same ~ where a pair is more likely one person than
    # two, tau_unlike ~ the median pair cosine.
    threshold: float = 0.25
    same_person_threshold: float = 0.4
    unlike_threshold: float = 0.07
    slope: float = 0.05
    wrong_share: float = 0.1
    # On a collection's own scale (on_scale): tau sits this share of the spread (p98 - median)
    # above the 98th percentile, and the slope is this share of the scaled one. A user's
    # "alike" is the closest 2 % to the person they have in mind, and the faces a session
    # shows are alike to more faces than a random pair is (the rounds look near the
    # collection's centroid and near the answers), so the collection's p98 reads too many of
    # them as alike. Chosen on dev targets (bench/personalize/README.md, 2026-12-01: 100
    # targets, seed offset 200): mean rounds -6.0 [-8.6, -3.6] under embedding likeness,
    # -3.4 [-6.8, +0.1] at 10 % flipped answers, -0.6 [-3.1, +1.9] under per-user likeness.
    scale_lift: float = 0.16
    scale_slope: float = 0.8


def on_scale(m: AnswerModel, median: float, p98: float, lifted: bool = True) -> AnswerModel:
    """``m`` on a collection's own scale of likeness, read from its pair-score quantiles (the
    retriever's VectorFieldStats.similarity_profile) instead of SFace's constants.

    ``m``'s tau and tau_unlike are what its constants were chosen as: the 98th percentile and
    the median pair cosine of an SFace gallery. They become this collection's; the slope
    scales with the spread between them; tau_same keeps its place between tau and a cosine of
    1 (SFace: 0.4 is a fifth of the way from 0.25 to 1), so it stays a cosine however
    compressed the top of the scale is. A cone of vectors all within 0.3 of each other gets a
    slope and a "same person" step on its own scale, not SFace's 0.05 and 0.4, which there
    would call every pair one person. With ``lifted``, tau is then lifted and the slope
    sharpened (``scale_lift``, ``scale_slope``: what sessions show is not a random pair); not
    in a small collection, whose p98 is already same-person territory (sessions.py)."""
    lift, sharpen = (m.scale_lift, m.scale_slope) if lifted else (0.0, 1.0)
    spread = m.threshold - m.unlike_threshold
    a = (p98 - median) / spread if spread > 0 else 1.0
    above = (m.same_person_threshold - m.threshold) / max(1.0 - m.threshold, 1e-6)
    return replace(
        m,
        threshold=p98 + lift * (p98 - median),
        unlike_threshold=median,
        same_person_threshold=p98 + above * (1.0 - p98),
        slope=m.slope * a * sharpen,
    )


def _log_like(c: np.ndarray, tau: float, m: AnswerModel) -> tuple[np.ndarray, np.ndarray]:
    """log like(c, tau) and log(1 - like(c, tau)), stably."""
    eps = m.wrong_share
    p = eps + (1.0 - 2.0 * eps) / (1.0 + np.exp(-np.clip((c - tau) / m.slope, -60, 60)))
    p = np.clip(p, 1e-12, 1.0 - 1e-12)
    return np.log(p), np.log1p(-p)


def _terms(c: np.ndarray, codes: np.ndarray, m: AnswerModel) -> np.ndarray:
    """Per-label log P(answer | target at cosine c from the labelled face): (n, l)."""
    yes, no = _log_like(c, m.threshold, m)
    out = np.where(codes == SIMILAR, yes, 0.0) + np.where(codes == DISSIMILAR, no, 0.0)
    if (codes == NEAR_MISS).any():
        _, not_same = _log_like(c, m.same_person_threshold, m)
        out += np.where(codes == NEAR_MISS, yes + not_same, 0.0)
    if (codes == NOTHING_LIKE).any():
        _, far = _log_like(c, m.unlike_threshold, m)
        out += np.where(codes == NOTHING_LIKE, far + no, 0.0)  # also "not similar"
    return out


def log_likelihood(
    z: np.ndarray, z_labelled: np.ndarray, codes: np.ndarray, m: AnswerModel
) -> np.ndarray:
    """log P(answers | target = x) for unit rows z (n, d), labelled unit rows (l, d) -> (n,)."""
    if not len(z_labelled) or not len(z):
        return np.zeros(len(z), np.float64)
    c = np.asarray(z, np.float64) @ np.asarray(z_labelled, np.float64).T  # (n, l)
    return _terms(c, np.asarray(codes)[None, :], m).sum(1)


def credibility(
    z_labelled: np.ndarray, codes: np.ndarray, m: AnswerModel, temperature: float
) -> np.ndarray:
    """Per label, in [0.01, 1]: for a positive p, how much the other answers support "the
    person is near p" against "the person is far from every labelled face":

        w_p = min(1, 2 sigmoid((LL_others(t = p) - LL_others(t far)) / temperature))

    An isolated positive (no other answer near it) keeps 1, one that nearby answers agree with
    keeps 1, one that nearby "dissimilar" answers contradict tends to 0. Negatives get 1 (most
    faces are not the person: a wrong "dissimilar" costs little). temperature 0 = every weight 1
    (FaIRCoP as published: every label trusted)."""
    codes = np.asarray(codes)
    w = np.ones(len(codes), np.float64)
    pos = np.flatnonzero(codes > 0)
    if not len(pos) or temperature <= 0:
        return w
    z = np.asarray(z_labelled, np.float64)
    at_p = _terms(z[pos] @ z.T, codes[None, :], m)  # (p, l)
    far = _terms(-np.ones((1, len(codes))), codes[None, :], m)  # (1, l)
    diff = at_p - far
    diff[np.arange(len(pos)), pos] = 0.0  # a label is no evidence for itself
    support = diff.sum(1) / temperature
    w[pos] = np.clip(2.0 / (1.0 + np.exp(-np.clip(support, -60, 60))), 0.01, 1.0)
    return w


def corroboration(z_positives: np.ndarray, threshold: float) -> np.ndarray:
    """Per positive, 1 when another positive lies within ``threshold`` (cosine) of it, else 0:
    what the head trains on. A wrong "similar" is a random face, rarely near another positive
    (2 % of pairs at the default tau); true ones sit near the person and so near each other.
    Training on isolated positives let a tenth of flipped answers warp the head (bench:
    median rounds 17.5 without training against 32 with it, 10 % flips)."""
    z = np.asarray(z_positives, np.float64)
    if len(z) < 2:
        return np.zeros(len(z))
    c = z @ z.T
    np.fill_diagonal(c, -np.inf)
    return (c.max(1) >= threshold).astype(np.float64)


def contradicted(
    z_positives: np.ndarray,
    z_negatives: np.ndarray,
    corroborated: np.ndarray,
    same_person_threshold: float,
    min_rejections: int = 6,
) -> np.ndarray:
    """Per positive, True when no other positive corroborates it and at least
    ``min_rejections`` faces of its own person (cosine >= tau_same) were answered dissimilar:
    the user has said, again and again, that the person is not like this face's. Such a
    positive stops steering the search (scoring.clusters gives it weight 0)."""
    out = np.zeros(len(z_positives), bool)
    if not len(z_positives) or not len(z_negatives) or min_rejections <= 0:
        return out
    near = (np.asarray(z_positives) @ np.asarray(z_negatives).T) >= same_person_threshold
    return (near.sum(1) >= min_rejections) & (np.asarray(corroborated) <= 0)
