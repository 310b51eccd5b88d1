"""The answer model (answer_model.py) on a gallery whose answer is known: 20 people x 20 faces,
the person in mind is person 0, and a fifth of the user's answers are wrong."""

from __future__ import annotations

import numpy as np

from facesearch_server.personalizer.answer_model import (
    DISSIMILAR,
    NEAR_MISS,
    NOTHING_LIKE,
    SIMILAR,
    AnswerModel,
    credibility,
    log_likelihood,
)
from facesearch_server.personalizer.head import Head
from facesearch_server.personalizer.scoring import ScoringParams, clusters, rescore

PEOPLE, FACES, DIM = 20, 20, 16


def _gallery(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((PEOPLE, DIM))
    person = np.repeat(np.arange(PEOPLE), FACES)
    v = centres[person] + 0.25 * rng.standard_normal((len(person), DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32), person


def _noisy_answers(person: np.ndarray, wrong: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """60 faces (12 of person 0) answered "similar" iff of person 0, ``wrong`` of them flipped."""
    rng = np.random.default_rng(seed)
    asked = np.concatenate(
        [rng.choice(FACES, 12, replace=False), rng.choice(np.arange(FACES, len(person)), 48)]
    )
    truth = person[asked] == 0
    flipped = rng.random(len(asked)) < wrong
    codes = np.where(truth ^ flipped, SIMILAR, DISSIMILAR)
    return asked, codes


def test_the_person_in_mind_ranks_first_despite_a_fifth_of_wrong_answers() -> None:
    v, person = _gallery()
    # This user calls only the same person similar: same-person cosines here are >= 0.87,
    # other people's <= 0.5 (98th percentile), so the answers' threshold is 0.6.
    floor = AnswerModel(threshold=0.6, wrong_share=0.1)
    no_floor = AnswerModel(threshold=0.6, wrong_share=0.0)
    top_floor, top_no_floor = [], []
    for seed in range(10):
        asked, codes = _noisy_answers(person, 0.2, seed)
        for model, out in ((floor, top_floor), (no_floor, top_no_floor)):
            ll = log_likelihood(v, v[asked], codes, model)
            out.append(np.mean(person[np.argsort(-ll)[:10]] == 0))
    # With the floor, the 10 most likely faces are the person's in (nearly) every trial; without
    # it one wrong "dissimilar" next to the person rules them out.
    assert min(top_floor) == 1.0, top_floor
    assert np.mean(top_no_floor) < 0.8, top_no_floor


def test_a_contradicted_positive_loses_credibility_and_stops_steering() -> None:
    v, person = _gallery()
    true_pos = [0, 1]  # person 0
    wrong_pos = [FACES * 5]  # a face of person 5, called similar by mistake
    contradicting = list(range(FACES * 5 + 1, FACES * 5 + 5))  # person 5 rejected four times
    others = [FACES * p for p in (7, 9, 11)]
    pos, neg = true_pos + wrong_pos, contradicting + others
    m = AnswerModel()
    w = credibility(
        np.concatenate([v[pos], v[neg]]),
        np.array([SIMILAR] * 3 + [DISSIMILAR] * len(neg)),
        m,
        temperature=2.0,
    )
    assert w[0] == w[1] == 1.0 and w[2] < 0.1, w
    head = Head.identity("m", DIM)
    # The options as the bench compared them (off by default in the service).
    careful = ScoringParams(likelihood_weight=0.05, credibility_temperature=2.0)
    robust = clusters(head, v[pos], v[neg], params=careful)
    trusting = ScoringParams(likelihood_weight=0.0, credibility_temperature=0.0)
    naive = clusters(head, v[pos], v[neg], params=trusting)
    unseen = np.setdiff1d(np.arange(len(v)), pos + neg)

    # The mean rank of person 5's unseen faces: lower (better) when every label is trusted.
    def rank_of_5(c, params) -> float:
        order = unseen[np.argsort(-rescore(head, v[unseen], c, params))]
        return float(np.mean(np.flatnonzero(person[order] == 5)))

    assert rank_of_5(robust, careful) > rank_of_5(naive, trusting) + 5
    assert np.all(person[unseen[np.argsort(-rescore(head, v[unseen], robust, careful))][:10]] == 0)


def test_rich_answers_say_more_than_dissimilar() -> None:
    v, person = _gallery()
    m = AnswerModel(threshold=0.3, same_person_threshold=0.75)
    shown = np.array([FACES * 3])  # one face of person 3
    ll_dis = log_likelihood(v, v[shown], np.array([DISSIMILAR]), m)
    ll_far = log_likelihood(v, v[shown], np.array([NOTHING_LIKE]), m)
    ll_near = log_likelihood(v, v[shown], np.array([NEAR_MISS]), m)
    mates = person == 3
    # "Nothing like them" rules out the person's faces harder than "dissimilar" does.
    assert ll_far[mates].max() < ll_dis[mates].min()
    # "Not them, but similar": faces like that face but not of that person are the likeliest.
    cos = v @ v[shown[0]]
    like_not_same = (~mates) & (cos > 0.4) & (cos < 0.65)
    assert like_not_same.any()
    assert ll_near[like_not_same].min() > ll_near[mates].max()
