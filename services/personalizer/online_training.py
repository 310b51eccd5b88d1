"""One round of online training: a bounded number of Adam steps of SCLoss on the session's
labelled faces, starting from the session's head and anchored to the head the session started
from (the user's lasting head, consolidation.py).

Bounded twice, so a round's cost does not grow with a session's length: at most ``steps`` Adam
steps and at most ``time_budget_s`` seconds; the labelled set is capped to the newest
``max_examples`` faces of each cluster.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from facesearch_server.personalizer.sc_loss import SCLossParams, sc_loss

# One intra-op thread: a round is tiny (d=128) and the service runs many rounds side by side.
torch.set_num_threads(1)


@dataclass(frozen=True)
class TrainingParams:
    steps: int = 10
    learning_rate: float = 0.05
    time_budget_s: float = 0.05
    max_examples: int = 256
    loss: SCLossParams = field(default_factory=SCLossParams)


def train_round(
    weight: np.ndarray,
    positives: np.ndarray,
    negatives: np.ndarray,
    params: TrainingParams = TrainingParams(),
    pos_weights: np.ndarray | None = None,
    reference: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """The updated W and the number of steps taken (0 when there was nothing to learn).
    ``pos_weights``: each positive's credibility (answer_model.credibility), default 1;
    ``reference``: W_0 of SCLoss's anchor term (None = the identity)."""
    if len(positives) == 0 or (pos_weights is not None and not np.any(pos_weights > 0)):
        # Without a (corroborated) positive there is nothing to separate from; the head stays.
        return weight, 0
    pos = torch.from_numpy(np.asarray(positives[-params.max_examples :], np.float32))
    neg = torch.from_numpy(np.asarray(negatives[-params.max_examples :], np.float32))
    pw = None
    if pos_weights is not None:
        pw = torch.from_numpy(np.asarray(pos_weights[-params.max_examples :], np.float32))
    ref = None if reference is None else torch.from_numpy(np.asarray(reference, np.float32))
    w = torch.tensor(weight, dtype=torch.float32, requires_grad=True)
    opt = torch.optim.Adam([w], lr=params.learning_rate)
    deadline = time.perf_counter() + params.time_budget_s
    steps = 0
    for _ in range(params.steps):
        opt.zero_grad()
        loss = sc_loss(w, pos, neg, params.loss, pw, ref)
        loss.backward()
        opt.step()
        steps += 1
        if time.perf_counter() > deadline:
            break
    out = w.detach().numpy().astype(np.float32)
    if not np.isfinite(out).all():  # never store a broken head
        return weight, 0
    return out, steps
