"""Verification on all pairs of a labelled set of embeddings: TAR at a FAR, with a bootstrap
interval over identities, and accuracy with the threshold chosen on other folds of people.

Pairs: every two images of one person are a genuine pair, every two images of different
people an impostor pair (each unordered pair once).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

BOOTSTRAP = 1000
MAX_FOLDS = 10
MIN_PEOPLE_PER_FOLD = 3  # a fold needs impostor pairs of its own
MEAN_TAR_FAR = 1e-2


@dataclass
class Verification:
    images: int
    identities: int
    genuine_pairs: int
    impostor_pairs: int
    far: float
    tar: float  # at the threshold that ``far`` of these impostor pairs pass
    tar_ci: tuple[float, float]  # 95 %, identities resampled (threshold fixed)
    threshold: float
    mean_tar: float  # mean TAR over FAR in (0, MEAN_TAR_FAR]: a finer score for small sets
    folds: int
    accuracy: float  # balanced (genuine and impostor pairs weigh the same), mean over folds
    accuracy_std: float  # over folds


def pair_scores(emb: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cosines of all unordered pairs (embeddings L2-normalised), whether each is genuine, and
    the index of the person of a genuine pair's images (-1 for impostor pairs)."""
    codes = np.unique(ids, return_inverse=True)[1]
    i, j = np.triu_indices(len(emb), k=1)
    scores = (emb @ emb.T)[i, j]
    genuine = codes[i] == codes[j]
    return scores, genuine, np.where(genuine, codes[i], -1)


def threshold_at_far(impostor: np.ndarray, far: float) -> float:
    """The lowest threshold (score > t accepted) that at most ``far`` of impostors pass."""
    ranked = np.sort(impostor)[::-1]
    k = int(np.floor(far * len(ranked)))
    return float(ranked[k]) if k < len(ranked) else float("-inf")


def mean_tar(genuine: np.ndarray, impostor: np.ndarray, max_far: float = MEAN_TAR_FAR) -> float:
    """TAR averaged over the thresholds of the top ``max_far`` impostor scores (the partial
    area under the ROC curve up to ``max_far``, divided by it): unlike TAR at one FAR it
    moves with every genuine pair that crosses any of those thresholds."""
    top = np.sort(impostor)[::-1][: max(1, int(max_far * len(impostor)))]
    g = np.sort(genuine)
    return float(np.mean(1.0 - np.searchsorted(g, top, side="right") / len(g)))


def _folds(ids: np.ndarray) -> np.ndarray:
    """A fold per image, by a hash of its person: folds never share a person."""
    people = np.unique(ids)
    folds = max(1, min(MAX_FOLDS, len(people) // MIN_PEOPLE_PER_FOLD))
    order = sorted(people, key=lambda p: hashlib.sha1(str(p).encode()).hexdigest())
    fold_of = {p: k % folds for k, p in enumerate(order)}
    return np.array([fold_of[p] for p in ids])


def _best_threshold(scores: np.ndarray, genuine: np.ndarray) -> float:
    """The threshold with the best balanced accuracy on these pairs, half-way between the
    score it accepts and the next lower one (not on a training pair's own score)."""
    g = np.sort(scores[genuine])
    im = np.sort(scores[~genuine])
    candidates = np.unique(scores)
    tpr = 1.0 - np.searchsorted(g, candidates, side="left") / len(g)  # score >= t
    tnr = np.searchsorted(im, candidates, side="left") / len(im)  # score < t
    best = int(np.argmax(tpr + tnr))
    below = candidates[best - 1] if best > 0 else candidates[best] - 1e-6
    return float(0.5 * (candidates[best] + below))


def fold_accuracy(emb: np.ndarray, ids: np.ndarray) -> list[float]:
    """Balanced accuracy per fold, each at the threshold chosen on the other folds' pairs;
    only pairs inside one fold count (so a threshold never saw a tested person)."""
    fold = _folds(ids)
    folds = int(fold.max()) + 1
    if folds < 2:
        return []
    per_fold = []
    for k in range(folds):
        rows = np.flatnonzero(fold == k)
        s, g, _ = pair_scores(emb[rows], ids[rows])
        per_fold.append((s, g))
    out = []
    for k in range(folds):
        train_s = np.concatenate([per_fold[m][0] for m in range(folds) if m != k])
        train_g = np.concatenate([per_fold[m][1] for m in range(folds) if m != k])
        t = _best_threshold(train_s, train_g)
        s, g = per_fold[k]
        if g.any() and (~g).any():
            out.append(0.5 * float((s[g] >= t).mean()) + 0.5 * float((s[~g] < t).mean()))
    return out


def verify(emb: np.ndarray, ids: np.ndarray, far: float = 1e-3, seed: int = 0) -> Verification:
    scores, genuine, person = pair_scores(emb, ids)
    if not genuine.any() or genuine.all():
        raise ValueError("verification needs genuine and impostor pairs")
    t = threshold_at_far(scores[~genuine], far)
    hits = scores[genuine] > t
    # Bootstrap over identities: a person's genuine pairs share images, so they are resampled
    # together; the threshold stays fixed (millions of impostor pairs pin it down).
    people = np.unique(ids).size
    per_hits = np.bincount(person[genuine], weights=hits, minlength=people)
    per_pairs = np.bincount(person[genuine], minlength=people)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, people, size=(BOOTSTRAP, people))
    boot = per_hits[draws].sum(1) / np.maximum(per_pairs[draws].sum(1), 1)
    acc = fold_accuracy(emb, ids)
    return Verification(
        images=len(emb),
        identities=people,
        genuine_pairs=int(genuine.sum()),
        impostor_pairs=int((~genuine).sum()),
        far=far,
        tar=float(hits.mean()),
        tar_ci=(float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))),
        threshold=t,
        mean_tar=mean_tar(scores[genuine], scores[~genuine]),
        folds=len(acc),
        accuracy=float(np.mean(acc)) if acc else float("nan"),
        accuracy_std=float(np.std(acc)) if acc else float("nan"),
    )
