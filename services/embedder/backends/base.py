"""The one interface an encoder runtime offers the embedder."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from facesearch_server.embedder import model_files as mf


class EncoderRuntime(Protocol):
    """Runs an encoder model by id on a batch; tensors are named as in model_files."""

    name: str  # "local" or "triton", reported by ListModels
    # The encoders it serves, by id: the shipped table plus the fine-tuned face encoders of
    # its model dir (model_files.served_encoders), known from construction on.
    specs: dict[str, mf.EncoderSpec]

    async def start(self) -> None:
        """Load or connect; must not fail when a remote server is down (it may come back)."""

    async def infer(self, model_id: str, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """The model's output for a batch (first dimension = batch size).

        Raises runtime.errors.Unavailable when the runtime cannot be reached in time.
        """
        ...

    async def ready(self, model_id: str) -> bool:
        """Whether the model can serve now (never raises)."""
        ...

    def max_batch(self, model_id: str) -> int:
        """Largest batch one ``infer`` call may carry; callers split bigger work."""
        ...

    async def close(self) -> None: ...
