"""Display policies compared by target testing, all over the same in-process gallery.

Each policy shows k unseen gallery faces per round and learns from the user's answers:
- random: k unseen faces uniformly at random.
- rocchio: q' = alpha q + beta mean(pos) - gamma mean(neg) (q = 0 without a seed; SMART's
  alpha 1, beta 0.75, gamma 0.15); shows the unseen faces of highest cos(x, q).
- bayes: PicHunter-style posterior over which gallery face is the target. The user model is
  P(similar | x shown, target i) = sigmoid((cos(x, i) - tau) / s), with tau the gallery's
  98th-percentile pair cosine (known to a designer without knowing the target) and s = 0.05;
  shows the k unseen faces of highest posterior.
- faircop: ours, through the service's own modules (head, SCLoss training, scoring, exploration,
  round_planner); candidates from an exact inner-product search over the gallery, which is what
  the retriever's flat index answers.
Every policy but random starts from the same diverse first round (``first_round``).
"""

from __future__ import annotations

import numpy as np

from facesearch_server.personalizer.exploration import farthest_points, random_directions
from facesearch_server.personalizer.head import Head
from facesearch_server.personalizer.online_training import train_round
from facesearch_server.personalizer.round_planner import RoundParams, exploratory_count, select
from facesearch_server.personalizer.scoring import clusters, retriever_query


def _top_unseen(scores: np.ndarray, seen: np.ndarray, k: int) -> list[int]:
    s = np.where(seen, -np.inf, scores)
    idx = np.argpartition(-s, min(k, len(s) - 1))[:k]
    return [int(i) for i in idx[np.argsort(-s[idx])] if np.isfinite(s[i])]


def exploration_pool(
    vectors: np.ndarray, seen: np.ndarray, rng: np.random.Generator, p: RoundParams
) -> list[int]:
    """Best unseen hits of a few random directions (the service asks the retriever the same)."""
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

    def observe(self, shown: list[int], similar: list[bool]) -> None:
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

    def observe(self, shown: list[int], similar: list[bool]) -> None:
        pos = [i for i, s in zip(shown, similar, strict=True) if s]
        neg = [i for i, s in zip(shown, similar, strict=True) if not s]
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

    def observe(self, shown: list[int], similar: list[bool]) -> None:
        sims = self.v @ self.v[shown].T  # (n, shown)
        z = (sims - self.tau) / self.slope
        sign = np.where(np.array(similar), 1.0, -1.0)
        # log sigmoid(sign * z), stably
        self.logp += -np.logaddexp(0.0, -(z * sign)).sum(1)

    def _show(self, k: int) -> list[int]:
        return _top_unseen(self.logp, self.seen, k)


class FaircopPolicy(Policy):
    name = "faircop"

    def __init__(
        self, vectors, rng, first, params: RoundParams | None = None, head: Head | None = None
    ) -> None:
        super().__init__(vectors, rng, first)
        self.p = params or RoundParams()
        self.head = head or Head.identity("bench", vectors.shape[1])
        self.pos: list[int] = []
        self.neg: list[int] = []
        self.rounds_with_positive = 0

    def observe(self, shown: list[int], similar: list[bool]) -> None:
        self.pos += [i for i, s in zip(shown, similar, strict=True) if s]
        self.neg += [i for i, s in zip(shown, similar, strict=True) if not s]
        if self.pos:
            self.rounds_with_positive += 1
            w, _ = train_round(
                self.head.weight, self.v[self.pos], self.v[self.neg], self.p.training
            )
            self.head.weight = w
            self.head.rounds_trained += 1

    def _show(self, k: int) -> list[int]:
        n_exp = exploratory_count(k, len(self.pos), self.rounds_with_positive, self.p)
        c = clusters(self.head, self.v[self.pos], self.v[self.neg])
        cands: list[tuple[str, np.ndarray]] = []
        if c.mu_pos is not None:
            q = retriever_query(self.head, c, self.p.scoring)
            cands = [
                (str(i), self.v[i]) for i in _top_unseen(self.v @ q, self.seen, self.p.rescore_top)
            ]
        pool: list[tuple[str, np.ndarray]] = []
        if n_exp > 0:
            pool = [
                (str(i), self.v[i]) for i in exploration_pool(self.v, self.seen, self.rng, self.p)
            ]
        seen_idx = np.flatnonzero(self.seen)
        picks = select(self.head, c, cands, pool, self.v[seen_idx], set(), k, n_exp, self.p)
        return [int(pk.id) for pk in picks]


POLICIES = {p.name: p for p in (FaircopPolicy, RocchioPolicy, BayesPolicy, RandomPolicy)}
