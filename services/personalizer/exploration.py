"""Diverse faces: the first round without a seed, and the exploratory share of early rounds.

The personalizer sees a collection only through the retriever's search, so the candidate pool
is the union of the best hits of a few random directions (one batched Search call). From that
pool greedy farthest-point selection picks faces far from everything the user has already seen
and from each other: each pick maximises min over seen-or-picked faces of (1 - cos). That lets
the user say "not this" to whole regions of the face space at once.

Random directions find the extremes of a collection: faces alike to few others (on SFace, an
extreme along a random direction is in 1.8 % of faces' closest 2 %, about as a random face).
Faces near the collection's mean direction are alike to many (5 %: on the bench gallery the
closest-2 % membership correlates 0.83 with the cosine to the mean), so a user who answers by
likeness says "similar" to one of eight of them in a third of rounds, against one in seven
rounds for extremes. The rounds after the first (``hub_rounds`` of RoundParams) therefore draw
their pool around the centroid the retriever reports (``hub_directions``); later exploratory
rounds go back to isotropic directions, so that a user who answers "not this person" to faces
alike to the one in mind (the answer model reads that as "not alike") is not held near the
centroid (bench dev runs: median rounds 12.5 -> 7.0 under embedding likeness, 20 -> 16 under
per-user likeness; same-person-only answers unchanged with the hub rounds capped at 4, worse
without a cap). A hub round's Search asks for isotropic directions too, drawn from only when
the answers rule out the faces near the centroid (round_planner.select's ``fallback``); hub
rounds need a collection of RoundParams.hub_min_faces (1,000) or more.
"""

from __future__ import annotations

import hashlib

import numpy as np


def hub_directions(
    rng: np.random.Generator, n: int, centroid: np.ndarray, spread: float
) -> np.ndarray:
    """``n`` unit directions scattered around ``centroid`` (unit): centroid + spread x a
    random unit vector, normalised. Their best hits are typical faces of several kinds rather
    than the collection's extremes."""
    d = centroid[None, :].astype(np.float32) + spread * random_directions(rng, n, len(centroid))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def session_rng(seed: int, session_id: str, round_no: int) -> np.random.Generator:
    """The exploration RNG of one round of one session.

    Derived from (``seed`` setting, session id, round) rather than held by the process, so a
    session's candidates are reproducible (the same collection gives the same exploration pool
    on replay, on another replica, or after an undo puts the round back), while distinct
    sessions still explore differently. The id is hashed because it is text of any length."""
    digest = hashlib.blake2b(session_id.encode(), digest_size=8).digest()
    return np.random.default_rng((seed, int.from_bytes(digest, "little"), round_no))


def random_directions(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """``n`` random unit vectors (isotropic), the queries of an exploration pool."""
    d = rng.standard_normal((n, dim)).astype(np.float32)
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def farthest_points(pool: np.ndarray, seen: np.ndarray, n: int) -> list[int]:
    """Indices of ``n`` pool rows chosen greedily far from ``seen`` rows and from each other."""
    if len(pool) == 0 or n <= 0:
        return []
    pool = pool / np.maximum(np.linalg.norm(pool, axis=1, keepdims=True), 1e-12)
    if len(seen):
        seen = seen / np.maximum(np.linalg.norm(seen, axis=1, keepdims=True), 1e-12)
        nearest = (pool @ seen.T).max(1)  # highest cosine to anything seen
    else:
        nearest = np.full(len(pool), -np.inf, np.float32)
    picked: list[int] = []
    if not len(seen):
        # Nothing seen: start from the pool face most central to the pool (a typical face).
        first = int(np.argmax(pool @ pool.mean(0)))
        picked.append(first)
        nearest = np.maximum(nearest, pool @ pool[first])
    while len(picked) < min(n, len(pool)):
        cand = nearest.copy()
        cand[picked] = np.inf
        i = int(np.argmin(cand))
        picked.append(i)
        nearest = np.maximum(nearest, pool @ pool[i])
    return picked
