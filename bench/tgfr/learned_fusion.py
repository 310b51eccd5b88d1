"""Learned fusion, simplified (issue #14 item 3, measured here only, not served): a logistic
regression over pair features, trained on the training identities to tell same-person pairs
from others, its score used for ranking.

Pair features of (degraded probe with its description, clean gallery face): face cosine,
probe quality, their product, the description's mean log-likelihood under the gallery face's
attributes, and that log-likelihood split per attribute (14 values, 0 where the description
says nothing), so the fusion learns which readings to trust and how much the face counts at
each quality. Gallery attributes on the training side are out-of-fold (models that never saw
that person), as they are on held-out identities. What METHODS.md describes (a fused
embedding trained with contrastive face-description alignment and identity losses) needs far
more than 110 labelled identities; this is the part our data can train.
"""

from __future__ import annotations

import asyncio

import numpy as np

from facesearch_server.embedder.attributes import names as an
from facesearch_server.embedder.attributes.dataset import AttributeSet
from facesearch_server.embedder.attributes.description import query_vector

CONDITIONS = ("clean", "24px", "16px", "12px", "blur3", "blur5", "jpeg10")
NEGATIVES_PER_PROBE = 30


def pair_features(
    face: np.ndarray, quality: np.ndarray, queries: np.ndarray, gallery_attr: np.ndarray
) -> np.ndarray:
    """(P, G) cosines, (P,) qualities, (P, 2n) evidence weights, (G, 2n) attribute vectors ->
    (P, G, 4 + n) features."""
    n = len(an.NAMES)
    contrib = queries[:, None, :] * gallery_attr[None, :, :]
    per_attribute = contrib[..., :n] + contrib[..., n:]
    q = np.broadcast_to(quality[:, None], face.shape)
    base = np.stack([face, q, q * face, per_attribute.sum(-1)], axis=-1)
    return np.concatenate([base, per_attribute], axis=-1).astype(np.float32)


def train(data: AttributeSet, train_mask: np.ndarray, model_dir: str, seed: int = 0):  # type: ignore[no-untyped-def]
    """The fitted fusion (sklearn LogisticRegression) from the training identities."""
    from sklearn.linear_model import LogisticRegression

    from bench.tgfr.bench_tgfr import out_of_fold_probabilities, read_descriptions
    from bench.tgfr.descriptions import describe

    labelled = np.flatnonzero(train_mask & (np.abs(data.labels).sum(axis=1) > 0))
    names = list(data.label_names)
    rng = np.random.default_rng(seed)
    texts = [
        describe(dict(zip(names, data.labels[i].tolist(), strict=True)), rng) for i in labelled
    ]
    evidence = asyncio.run(read_descriptions(texts, model_dir))
    queries = np.stack([query_vector(e) for e in evidence])
    gallery_attr = an.attribute_vector(out_of_fold_probabilities(data, labelled))
    gallery_emb = data.embeddings["clean"][labelled]
    ids = data.identities[labelled]
    same = ids[:, None] == ids[None, :]
    eye = np.eye(len(labelled), dtype=bool)
    xs, ys = [], []
    pick = np.random.default_rng(seed + 2)
    for cond in CONDITIONS:
        face = data.embeddings[cond][labelled] @ gallery_emb.T
        feats = pair_features(face, data.quality[cond][labelled], queries, gallery_attr)
        for i in range(len(labelled)):
            pos = np.flatnonzero(same[i] & ~eye[i])
            neg = pick.choice(np.flatnonzero(~same[i]), NEGATIVES_PER_PROBE, replace=False)
            xs.append(feats[i, np.concatenate([pos, neg])])
            ys.append(np.concatenate([np.ones(len(pos)), np.zeros(len(neg))]))
    model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000)
    return model.fit(np.concatenate(xs), np.concatenate(ys))


def score(model, features: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    p, g, f = features.shape
    return model.decision_function(features.reshape(-1, f)).reshape(p, g)
