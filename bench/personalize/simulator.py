"""The simulated user of target testing (PicHunter protocol).

The user holds a hidden target face and answers, for each shown face, "similar" when its
ground-truth similarity to the target passes a threshold, else "dissimilar"; with probability
``flip`` an answer is flipped (a tired or unsure user). Seeing the target itself ends the search.

Ground truths (``--truth``):
- identity: same person as the target (strict: most faces are dissimilar).
- embedding: same person, or cos(x, t) in the top ``similar_fraction`` of the gallery for that
  target (the embedding's own notion of similarity).
- user: same person, or cos(A x, A t) in the top ``similar_fraction``, where A = I + U S U^T is
  a hidden per-user metric (U a random orthonormal rank-16 basis, S = 3): this user weighs some
  face directions far more than the embedding does, which is what a per-user head must learn.
- attributes: same person, or agreeing on at least ``attr_agree`` of the 40 CelebA attributes
  (targets drawn from faces that carry attributes; faces without attributes count only by
  identity).
- identity_rich: a user who recognises the person (similar = same person only, as
  ``identity``) and also uses the pair of richer answers: "not this person, but similar" for a
  face in the embedding's top ``similar_fraction`` for the target, "not this person, nothing
  like them" for a face below the target's median cosine, plain "not this person" otherwise.

Answers are codes (services/personalizer/answer_model.py): 1 similar, -1 dissimilar, 2 not the
person but similar, -2 not the person and nothing like them. A flipped answer turns a positive
into -1 and a negative into 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TRUTHS = ("identity", "identity_rich", "embedding", "user", "attributes")


def hidden_metric(rng: np.random.Generator, dim: int, rank: int = 16, strength: float = 3.0):
    u, _ = np.linalg.qr(rng.standard_normal((dim, rank)))
    return (np.eye(dim) + strength * u @ u.T).astype(np.float32)


@dataclass
class GroundTruth:
    vectors: np.ndarray
    identity: np.ndarray  # int codes, -1 unknown
    attributes: np.ndarray
    truth: str
    similar_fraction: float = 0.02
    attr_agree: int = 36
    # Rank of the hidden per-user metric of ``user`` (hidden_metric).
    user_rank: int = 16

    def similar_mask(self, target: int, rng: np.random.Generator) -> np.ndarray:
        n = len(self.vectors)
        same = (
            self.identity == self.identity[target]
            if self.identity[target] >= 0
            else np.zeros(n, bool)
        )
        same[target] = True
        if self.truth in ("identity", "identity_rich"):
            return same
        if self.truth in ("embedding", "user"):
            v = self.vectors
            if self.truth == "user":
                a = hidden_metric(rng, v.shape[1], self.user_rank)
                v = v @ a.T
                v = v / np.linalg.norm(v, axis=1, keepdims=True)
            sims = v @ v[target]
            tau = np.quantile(sims, 1.0 - self.similar_fraction)
            return same | (sims >= tau)
        if self.truth == "attributes":
            has = (self.attributes != 0).any(1)
            agree = (self.attributes == self.attributes[target]).sum(1)
            return same | (has & (agree >= self.attr_agree))
        raise ValueError(f"unknown truth {self.truth!r}; use one of {TRUTHS}")

    def rich_masks(self, target: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(near miss, nothing like) masks for ``identity_rich``, else None."""
        if self.truth != "identity_rich":
            return None
        sims = self.vectors @ self.vectors[target]
        near = sims >= np.quantile(sims, 1.0 - self.similar_fraction)
        return near, sims < np.median(sims)

    def eligible_targets(self) -> np.ndarray:
        if self.truth == "attributes":
            return np.flatnonzero((self.attributes != 0).any(1))
        return np.arange(len(self.vectors))


class SimulatedUser:
    def __init__(
        self,
        target: int,
        similar: np.ndarray,
        flip: float,
        rng: np.random.Generator,
        rich: tuple[np.ndarray, np.ndarray] | None = None,
    ):
        self.target = target
        self.similar = similar
        self.flip = flip
        self.rng = rng
        self.rich = rich

    def answer(self, shown: list[int]) -> list[int]:
        """One answer code per shown face (see the module docstring)."""
        out = []
        for i in shown:
            s = bool(self.similar[i])
            if self.flip and self.rng.random() < self.flip:
                out.append(-1 if s else 1)
                continue
            if s:
                out.append(1)
            elif self.rich is not None and self.rich[0][i]:
                out.append(2)
            elif self.rich is not None and self.rich[1][i]:
                out.append(-2)
            else:
                out.append(-1)
        return out
