"""A head: a linear map W (d x d) on the frozen face embedding, f(x) = W x.

Two heads take part in a session: the user's lasting head (kept in Redis per tenant, user and
face model id, trained from relative answers at each session's end: consolidation.py) and the
session's own head, which starts as a copy of it and learns this session's target
(online_training.py). W starts at the identity, so a user with no history searches the plain
embedding. ``model_id`` travels with the weights so a head trained on one model's vectors is
never applied to another's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

_DTYPE = np.dtype("<f4")
PROBE_SIZE = 256
PROBE_SEED = 20260521


@lru_cache(maxsize=8)
def _probe(dim: int) -> np.ndarray:
    rng = np.random.default_rng(PROBE_SEED)
    x = rng.standard_normal((PROBE_SIZE, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x.setflags(write=False)
    return x


@dataclass
class Head:
    model_id: str
    weight: np.ndarray  # (d, d) float32
    version: int = 0
    rounds_trained: int = 0
    updated_unix: float = 0.0
    sessions_trained: int = 0
    # The user's reset epoch when the head was read (head_store.py): a session stores its
    # answers into the head only while it is unchanged.
    epoch: int = 0

    @classmethod
    def identity(cls, model_id: str, dim: int) -> Head:
        return cls(model_id, np.eye(dim, dtype=np.float32))

    @property
    def dim(self) -> int:
        return int(self.weight.shape[0])

    def apply(self, x: np.ndarray) -> np.ndarray:
        """f(x) = W x for a batch of row vectors (n, d) -> (n, d)."""
        return np.asarray(x, np.float32) @ self.weight.T

    def drift(self) -> float:
        """Frobenius distance from the identity."""
        return float(np.linalg.norm(self.weight - np.eye(self.dim, dtype=np.float32)))

    def distance_from_identity(self) -> float:
        """||W - I||_F / sqrt(d): the drift per dimension, comparable across face models (an
        entry-wise RMS change; 0 = the plain embedding)."""
        return self.drift() / float(np.sqrt(self.dim))

    def probe_cosine_change(self) -> float:
        """Mean |cos(W x, W y) - cos(x, y)| over the pairs of a fixed probe: how much the head
        changes the likeness of two faces, on average (0 = not at all). The probe is
        PROBE_SIZE unit vectors drawn with a fixed seed, the same for every user and call, so
        the figure of two users (or of one user over time) compares."""
        x = _probe(self.dim)
        z = x @ self.weight.astype(np.float64).T
        z /= np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
        iu = np.triu_indices(len(x), 1)
        return float(np.abs((z @ z.T)[iu] - (x @ x.T)[iu]).mean())

    def weight_bytes(self) -> bytes:
        return np.ascontiguousarray(self.weight, dtype=_DTYPE).tobytes()

    @staticmethod
    def weight_from_bytes(raw: bytes, dim: int) -> np.ndarray:
        if len(raw) != dim * dim * _DTYPE.itemsize:
            raise ValueError(f"stored head has {len(raw)} bytes, expected {dim}x{dim} float32")
        w = np.frombuffer(raw, dtype=_DTYPE).reshape(dim, dim).astype(np.float32)
        if not np.isfinite(w).all():
            raise ValueError("stored head holds NaN or Inf")
        return w
