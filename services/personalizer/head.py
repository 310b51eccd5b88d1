"""The per-user head: a linear map W (d x d) on the frozen face embedding, f(x) = W x.

W starts at the identity, so a user with no history searches the plain embedding. It is kept
per (tenant, user, face model id); ``model_id`` travels with the weights so a head trained on
one model's vectors is never applied to another's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_DTYPE = np.dtype("<f4")


@dataclass
class Head:
    model_id: str
    weight: np.ndarray  # (d, d) float32
    version: int = 0
    rounds_trained: int = 0
    updated_unix: float = 0.0

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
