"""The posterior over the person in mind (target_posterior.py) on a gallery whose answer is
known: 20 people x 20 faces, the person in mind is person 0, and some answers are wrong."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from facesearch_server.personalizer.answer_model import DISSIMILAR, SIMILAR, AnswerModel
from facesearch_server.personalizer.head import Head
from facesearch_server.personalizer.round_planner import RoundParams, scoring_queries, select
from facesearch_server.personalizer.scoring import clusters
from facesearch_server.personalizer.target_posterior import PosteriorParams, log_posterior

PEOPLE, FACES, DIM = 20, 20, 16
# This user calls only the same person similar: same-person cosines here are >= 0.87, other
# people's <= 0.5 (98th percentile).
ANSWERS = AnswerModel(threshold=0.6, same_person_threshold=0.8)


def _gallery(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((PEOPLE, DIM))
    person = np.repeat(np.arange(PEOPLE), FACES)
    v = centres[person] + 0.25 * rng.standard_normal((len(person), DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32), person


def _params(ranking: str) -> RoundParams:
    p = RoundParams(ranking=ranking)
    return replace(p, scoring=replace(p.scoring, answers=ANSWERS))


def _next_round(
    v: np.ndarray, pos: list[int], neg: list[int], p: RoundParams, k: int = 4
) -> list[int]:
    """The faces the planner shows next, candidates from an exact search of every query (what
    the retriever's flat index answers)."""
    head = Head.identity("m", DIM)
    c = clusters(head, v[pos], v[neg], params=p.scoring)
    seen = sorted(set(pos + neg))
    unseen = np.setdiff1d(np.arange(len(v)), seen)
    cands: list[tuple[str, np.ndarray]] = []
    for q, top in scoring_queries(head, c, k, p, head):
        for i in unseen[np.argsort(-(v[unseen] @ q))[:top]]:
            cands.append((str(i), v[i]))
    picks = select(head, c, cands, [], v[seen], set(), k, 0, p, head)
    return [int(pk.id) for pk in picks]


def test_a_wrong_pair_of_similar_answers_the_user_rejects_around_does_not_steer() -> None:
    """One true "similar" (person 0) and two wrong ones on person 5, which corroborate each
    other (so the head trains on them and the contradiction rule spares them), while the user
    rejects four more of person 5's faces. The posterior weighs every answer: person 5 is ruled
    out by the rejections, so the next round shows person 0. The cluster ranking (the policy
    before it) follows the two wrong positives to person 5."""
    v, person = _gallery()
    pos = [0, 5 * FACES, 5 * FACES + 1]
    neg = [5 * FACES + j for j in range(2, 6)] + [FACES * p for p in range(6, 16)]
    shown = person[_next_round(v, pos, neg, _params("posterior"))]
    assert (shown == 0).all(), shown
    old = person[_next_round(v, pos, neg, _params("clusters"))]
    assert (old == 5).sum() >= 3, old  # the old policy fails here


def test_isolated_wrong_similar_answers_are_outvoted() -> None:
    """Two true positives and three wrong ones on persons 5, 7, 9 (each rejected twice
    around): the posterior's floor keeps one answer from costing a candidate more than
    log(1 / eps), so the true ones win; without it (eps 0) the faces moderately close to every
    positive (another person) win instead."""
    v, person = _gallery()
    wrong = [5 * FACES, 7 * FACES, 9 * FACES]
    rejected = [p * FACES + j for p in (5, 7, 9) for j in (1, 2)]
    neg = rejected + [FACES * p for p in (3, 4, 6, 8, 10, 11, 12)]
    p = _params("posterior")
    assert (person[_next_round(v, [0, 1, *wrong], neg, p)] == 0).all()
    no_floor = replace(p, posterior=replace(p.posterior, wrong_share=0.0))
    assert not (person[_next_round(v, [0, 1, *wrong], neg, no_floor)] == 0).any()


@pytest.mark.parametrize("seed", range(5))
def test_a_flipped_answer_lowers_the_person_but_the_rest_outvote_it(seed: int) -> None:
    """60 faces answered "similar" iff of person 0, a fifth of the answers flipped: person 0's
    faces still hold the posterior's top 10, and each flipped answer costs them at most
    log(1 / eps) (a lowered candidate, not a zeroed one)."""
    v, person = _gallery()
    rng = np.random.default_rng(seed)
    asked = np.concatenate(
        [rng.choice(FACES, 12, replace=False), rng.choice(np.arange(FACES, len(v)), 48)]
    )
    truth = person[asked] == 0
    flipped = rng.random(len(asked)) < 0.2
    codes = np.where(truth ^ flipped, SIMILAR, DISSIMILAR)
    head = Head.identity("m", DIM)
    params = PosteriorParams()
    lp = log_posterior(head, v, v[asked], codes, ANSWERS, params)
    assert (person[np.argsort(-lp)[:10]] == 0).all()
    clean = log_posterior(head, v, v[asked], np.where(truth, SIMILAR, DISSIMILAR), ANSWERS, params)
    cost = (clean - lp)[person == 0]
    assert 0 < cost.max() <= int(flipped.sum()) * np.log(1 / params.wrong_share) + 1e-6


def test_the_posterior_ranks_by_default_and_the_cluster_ranking_stays_selectable() -> None:
    assert RoundParams().ranking == "posterior"
    assert RoundParams(ranking="clusters").ranking == "clusters"
    with pytest.raises(ValueError):
        RoundParams(ranking="nonsense")
