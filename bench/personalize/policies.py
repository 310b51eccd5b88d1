"""Display policies compared by target testing, all over the same in-process gallery.

Each policy shows k unseen gallery faces per round and learns from the user's answers:
- random: k unseen faces uniformly at random.
- rocchio: q' = alpha q + beta mean(pos) - gamma mean(neg) (q = 0 without a seed; SMART's
  alpha 1, beta 0.75, gamma 0.15); shows the unseen faces of highest cos(x, q).
- bayes: PicHunter-style posterior over which gallery face is the target. The user model is
  P(similar | x shown, target i) = sigmoid((cos(x, i) - tau) / s), with tau the gallery's
  98th-percentile pair cosine (known to a designer without knowing the target) and s = 0.05;
  shows the k unseen faces of highest posterior.
- faircop: ours, through the service's own modules (head, SCLoss training, answer model,
  scoring, exploration, round_planner) with the service's defaults; candidates from an exact
  inner-product search over the gallery, which is what the retriever's flat index answers.
  It starts from a user's lasting head (identity unless given), trains its own session head
  from there, and ``lasting_head`` consolidates the session's answers into the lasting head as
  the service does at the session's end (consolidation.py).
  It ranks as the service's ``ranking`` setting says (default: the cluster score);
  ``--ranking posterior`` ranks by the posterior over the target (target_posterior.py).
- faircop-clusters: faircop forced to rank by the cluster score alone (``ranking="clusters"``).
- faircop-trusting: cluster ranking with every positive trained on (no corroboration), no
  exploration filter from negatives: FaIRCoP as it was before issue 15, for comparison.
- faircop-nohead: the same as faircop with the head never trained.
Answers are codes (simulator.py); rocchio, bayes and random read them as similar (code > 0) or
not, so only faircop uses the near-miss / nothing-like distinction.
Every policy but random starts from the same diverse first round (``first_round``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.personalizer.consolidation import (
    ConsolidationParams,
    consolidate,
    relative_answers,
)
from facesearch_server.personalizer.exploration import (
    farthest_points,
    hub_directions,
    random_directions,
)
from facesearch_server.personalizer.head import Head
from facesearch_server.personalizer.online_training import train_round
from facesearch_server.personalizer.round_planner import (
    RoundParams,
    exploratory_count,
    on_likeness_scale,
    scoring_queries,
    select,
    training_weights,
)
from facesearch_server.personalizer.scoring import clusters
from facesearch_server.retriever import similarity_profile


def _top_unseen(scores: np.ndarray, seen: np.ndarray, k: int) -> list[int]:
    s = np.where(seen, -np.inf, scores)
    idx = np.argpartition(-s, min(k, len(s) - 1))[:k]
    return [int(i) for i in idx[np.argsort(-s[idx])] if np.isfinite(s[i])]


def exploration_pool(
    vectors: np.ndarray,
    seen: np.ndarray,
    rng: np.random.Generator,
    p: RoundParams,
    centroid: np.ndarray | None = None,
) -> list[int]:
    """Best unseen hits of a few random directions, around ``centroid`` when given (the
    service asks the retriever the same: exploration.py)."""
    if centroid is not None:
        dirs = hub_directions(rng, p.pool_directions, centroid, p.hub_spread)
    else:
        dirs = random_directions(rng, p.pool_directions, vectors.shape[1])
    scores = vectors @ dirs.T  # (n, directions)
    out: set[int] = set()
    for j in range(dirs.shape[0]):
        out.update(_top_unseen(scores[:, j], seen, p.pool_per_direction))
    return sorted(out)


def first_round(vectors: np.ndarray, k: int, rng: np.random.Generator, p: RoundParams) -> list[int]:
    seen = np.zeros(len(vectors), bool)
    pool = exploration_pool(vectors, seen, rng, p)
    picked = farthest_points(vectors[pool], np.zeros((0, vectors.shape[1]), np.float32), k)
    return [pool[j] for j in picked]


class Policy:
    name = "policy"

    def __init__(self, vectors: np.ndarray, rng: np.random.Generator, first: list[int]) -> None:
        self.v = vectors
        self.rng = rng
        self.first = first
        self.seen = np.zeros(len(vectors), bool)
        self.round = 0

    def show(self, k: int) -> list[int]:
        ids = self.first[:k] if self.round == 0 and self.first else self._show(k)
        self.round += 1
        self.seen[ids] = True
        return ids

    def _show(self, k: int) -> list[int]:
        raise NotImplementedError

    def observe(self, shown: list[int], codes: list[int]) -> None:
        pass


class RandomPolicy(Policy):
    name = "random"

    def show(self, k: int) -> list[int]:
        unseen = np.flatnonzero(~self.seen)
        ids = [int(i) for i in self.rng.choice(unseen, size=min(k, len(unseen)), replace=False)]
        self.round += 1
        self.seen[ids] = True
        return ids


class RocchioPolicy(Policy):
    name = "rocchio"
    alpha, beta, gamma = 1.0, 0.75, 0.15

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.q = np.zeros(self.v.shape[1], np.float32)

    def observe(self, shown: list[int], codes: list[int]) -> None:
        pos = [i for i, c in zip(shown, codes, strict=True) if c > 0]
        neg = [i for i, c in zip(shown, codes, strict=True) if c < 0]
        q = self.alpha * self.q
        if pos:
            q = q + self.beta * self.v[pos].mean(0)
        if neg:
            q = q - self.gamma * self.v[neg].mean(0)
        self.q = q

    def _show(self, k: int) -> list[int]:
        n = np.linalg.norm(self.q)
        return _top_unseen(self.v @ (self.q / max(n, 1e-12)), self.seen, k)


class BayesPolicy(Policy):
    name = "bayes"
    slope = 0.05

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        sample = self.v[self.rng.choice(len(self.v), size=min(2000, len(self.v)), replace=False)]
        self.tau = float(np.quantile(sample @ sample.T, 0.98))
        self.logp = np.zeros(len(self.v), np.float64)

    def observe(self, shown: list[int], codes: list[int]) -> None:
        sims = self.v @ self.v[shown].T  # (n, shown)
        z = (sims - self.tau) / self.slope
        sign = np.where(np.array(codes) > 0, 1.0, -1.0)
        # log sigmoid(sign * z), stably
        self.logp += -np.logaddexp(0.0, -(z * sign)).sum(1)

    def _show(self, k: int) -> list[int]:
        return _top_unseen(self.logp, self.seen, k)


_PROFILES: dict[tuple[int, int], similarity_profile.Profile] = {}


def _profile(vectors: np.ndarray) -> similarity_profile.Profile:
    """The similarity profile of unit rows, sampled as the retriever samples a collection for
    VectorFieldStats.similarity_profile."""
    prof = similarity_profile.compute(
        np.arange(len(vectors)), lambda lab: vectors[lab], pb.METRIC_INNER_PRODUCT
    )
    assert prof is not None, "a gallery of fewer than 50 faces"
    return prof


def gallery_profile(vectors: np.ndarray) -> similarity_profile.Profile:
    """The gallery's similarity profile (cached per gallery array)."""
    key = (id(vectors), len(vectors))
    if key not in _PROFILES:
        _PROFILES[key] = _profile(vectors)
    return _PROFILES[key]


def gallery_scale(vectors: np.ndarray) -> tuple[float, float]:
    """(median, p98) pair score of the gallery (gallery_profile)."""
    prof = gallery_profile(vectors)
    return prof.median, prof.p98


def head_space_scale(vectors: np.ndarray, head: Head) -> tuple[float, float]:
    """(median, p98) of the gallery's pair cosines in the space of ``head`` (cos(W x, W y)),
    sampled as gallery_profile samples: the scale an answer model on that head's cosines
    needs. A head far from the identity spreads the cosines (the carry-over oracle, a rank-16
    metric of strength 3: p98 0.43 against the embedding's 0.26), so the embedding's scale
    would call most faces alike."""
    z = head.apply(vectors)
    z /= np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    prof = _profile(z)
    return prof.median, prof.p98


class FaircopPolicy(Policy):
    name = "faircop"

    def __init__(
        self,
        vectors,
        rng,
        first,
        params: RoundParams | None = None,
        head: Head | None = None,
        scale: bool = True,
        head_scale: bool = False,
    ) -> None:
        super().__init__(vectors, rng, first)
        # On the gallery's own likeness scale, as the service takes it from the retriever's
        # similarity profile of the collection (likeness_threshold = "collection"); with
        # ``scale`` False, on ``params``' constants (a fixed likeness_threshold). With
        # ``head_scale``, the scale of the cosines in ``head``'s space (head_space_scale; the
        # service does not do this: its lasting heads stay within 0.02 per dimension of the
        # identity, where the two scales agree).
        p = params or RoundParams()
        a = p.scoring.answers
        if head_scale and head is not None:
            self.scale = head_space_scale(vectors, head)
        elif scale:
            self.scale = gallery_scale(vectors)
        else:
            self.scale = (a.unlike_threshold, a.threshold)
        # The lifted tau only where the service lifts it: collections of hub_min_faces or more.
        lifted = len(vectors) >= p.hub_min_faces
        self.p = on_likeness_scale(p, *self.scale, lifted) if scale or head_scale else p
        # Where the early exploratory rounds look, as the service reads it from Describe.
        self.centroid = (
            np.asarray(gallery_profile(vectors).centroid, np.float32)
            if len(vectors) >= self.p.hub_min_faces
            else None
        )
        # ``head``: the user's lasting head; the session's own head starts as a copy of it.
        self.lasting = head or Head.identity("bench", vectors.shape[1])
        self.head = Head(self.lasting.model_id, self.lasting.weight.copy())
        self.labelled: list[int] = []
        self.codes: list[int] = []
        self.rounds_with_positive = 0

    def _split(self) -> tuple[list[int], list[int], list[int], list[int]]:
        pos = [(i, c) for i, c in zip(self.labelled, self.codes, strict=True) if c > 0]
        neg = [(i, c) for i, c in zip(self.labelled, self.codes, strict=True) if c < 0]
        return [i for i, _ in pos], [c for _, c in pos], [i for i, _ in neg], [c for _, c in neg]

    def observe(self, shown: list[int], codes: list[int]) -> None:
        self.labelled += shown
        self.codes += codes
        pos, pc, neg, nc = self._split()
        if pos:
            self.rounds_with_positive += 1
            c = clusters(self.head, self.v[pos], self.v[neg], pc, nc, self.p.scoring)
            w, _ = train_round(
                self.head.weight,
                self.v[pos],
                self.v[neg],
                self.p.training,
                training_weights(c, self.p, self.lasting),
                self.lasting.weight,
            )
            self.head.weight = w
            self.head.rounds_trained += 1

    def lasting_head(self, found: int | None, params: ConsolidationParams | None = None) -> Head:
        """The user's lasting head after this session (the service's EndSession / FOUND):
        ``found`` the face the user said was the person, None when the session failed."""
        pos, _, neg, _ = self._split()
        params = params or replace(ConsolidationParams(), corroboration_threshold=self.scale[1])
        answers = relative_answers(
            self.v[pos], self.v[neg], None if found is None else self.v[found], params
        )
        w, steps = consolidate(self.lasting.weight, answers, params)
        out = Head(self.lasting.model_id, w, rounds_trained=self.lasting.rounds_trained)
        out.rounds_trained += self.round if steps else 0
        return out

    def _show(self, k: int) -> list[int]:
        pos, pc, neg, nc = self._split()
        n_exp = exploratory_count(k, len(pos), self.rounds_with_positive, self.p)
        c = clusters(self.head, self.v[pos], self.v[neg], pc, nc, self.p.scoring)
        cands: list[tuple[str, np.ndarray]] = []
        ids: set[int] = set()
        for q, top in scoring_queries(
            self.head, c, k, self.p, self.lasting
        ):  # as the service asks them
            for i in _top_unseen(self.v @ q, self.seen, top):
                if i not in ids:
                    ids.add(i)
                    cands.append((str(i), self.v[i]))
        pool: list[tuple[str, np.ndarray]] = []
        fallback: list[tuple[str, np.ndarray]] = []
        if n_exp > 0:
            hub = (
                self.centroid
                if self.centroid is not None and 1 <= self.round <= self.p.hub_rounds
                else None
            )
            pool = [
                (str(i), self.v[i])
                for i in exploration_pool(self.v, self.seen, self.rng, self.p, hub)
            ]
            if hub is not None:  # the isotropic fallback the service asks for too
                fallback = [
                    (str(i), self.v[i])
                    for i in exploration_pool(self.v, self.seen, self.rng, self.p)
                ]
        seen_idx = np.flatnonzero(self.seen)
        picks = select(
            self.head,
            c,
            cands,
            pool,
            self.v[seen_idx],
            set(),
            k,
            n_exp,
            self.p,
            self.lasting,
            fallback,
        )
        return [int(pk.id) for pk in picks]


def trusting_params() -> RoundParams:
    """FaIRCoP with every label trusted (the design before the answer model)."""
    p = RoundParams()
    return replace(
        p,
        ranking="clusters",
        explore_margin=float("inf"),
        scoring=replace(
            p.scoring,
            likelihood_weight=0.0,
            credibility_temperature=0.0,
            corroborated_training=False,
        ),
    )


class ClusterFaircopPolicy(FaircopPolicy):
    """FaIRCoP ranking by the cluster score alone (``ranking="clusters"``, the service's
    policy before the target posterior: scoring.py), otherwise the same."""

    name = "faircop-clusters"

    def __init__(
        self,
        vectors,
        rng,
        first,
        params: RoundParams | None = None,
        head: Head | None = None,
        scale: bool = True,
    ) -> None:
        p = replace(params or RoundParams(), ranking="clusters")
        super().__init__(vectors, rng, first, p, head, scale)


class TrustingFaircopPolicy(FaircopPolicy):
    name = "faircop-trusting"

    def __init__(self, vectors, rng, first, head: Head | None = None) -> None:
        super().__init__(vectors, rng, first, trusting_params(), head)


class HeadlessFaircopPolicy(FaircopPolicy):
    """FaIRCoP's scoring and exploration with the head never trained (an alternative for noisy
    users: no label can warp the space)."""

    name = "faircop-nohead"

    def __init__(self, vectors, rng, first, head: Head | None = None) -> None:
        p = RoundParams()
        super().__init__(vectors, rng, first, replace(p, training=replace(p.training, steps=0)))


POLICIES = {
    p.name: p
    for p in (
        FaircopPolicy,
        ClusterFaircopPolicy,
        TrustingFaircopPolicy,
        HeadlessFaircopPolicy,
        RocchioPolicy,
        BayesPolicy,
        RandomPolicy,
    )
}
