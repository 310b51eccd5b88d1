"""The user's lasting head: what a finished session's answers teach about the user's own notion
of likeness, and nothing about that session's target.

A session ranks with its own head (online_training.py: SCLoss on the session's clusters, every
round), which learns where *this* person is: it pulls the positives together around their
centroid. Carried to the next session, where the user has someone else in mind, that pull
points the wrong way (bench/personalize: carrying the session head gained nothing). What does
carry over is how the user judges likeness. So the stored head W is trained only from relative
answers, once per session, when it ends (FOUND or EndSession):

    "the user called p like the person and n not"  =>  cos(W a, W p) > cos(W a, W n)

for an anchor a that stands for the person: the face the user said was the person (FOUND),
else each corroborated positive in turn (for the other positives). With z = normalize(W x),
T the temperature and rho the pull towards the identity:

    L(W) = mean_{a, p != a, n}  T * softplus( (z_a.z_n - z_a.z_p) / T )  +  rho ||W - I||_F^2

T * softplus(./T) is a smoothed hinge at 0: an answer the head already orders right (by more
than a few T) teaches almost nothing, so a user whose notion of likeness is the embedding's
leaves W at the identity (the pull's minimum) and the carried head does no harm; answers the
embedding orders wrong move W, towards the user's notion. A few Adam steps with a small
learning rate from the stored W (not from the identity) make one session a small step: the
head is an average over the user's sessions, not the last session's fit.

Wrong answers: positives count only when corroborated (answer_model.corroboration: another
positive, or the face the user said was the person, within tau), as for the session head; a
lone "similar" teaches nothing lasting.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from facesearch_server.personalizer.answer_model import corroboration


@dataclass(frozen=True)
class ConsolidationParams:
    # Adam steps and learning rate of one session's update (small: a session is one sample of
    # the user's notion of likeness, its target's quirks included).
    steps: int = 30
    learning_rate: float = 0.003
    temperature: float = 0.02
    # rho: pull of W towards the identity.
    identity_pull: float = 0.01
    # Bounds, so one update costs the same whatever the session's length.
    max_anchors: int = 32
    max_examples: int = 256
    time_budget_s: float = 1.0
    # tau of answer_model: a positive counts when another positive lies within it.
    corroboration_threshold: float = 0.25


@dataclass
class RelativeAnswers:
    """A session's answers as the lasting head reads them (unit rows of the plain embedding)."""

    anchors: np.ndarray  # (a, d)
    positives: np.ndarray  # (p, d)
    negatives: np.ndarray  # (n, d)
    # (a, p): True where anchor i is positive j itself (that pair is no answer).
    same: np.ndarray

    @property
    def usable(self) -> bool:
        return bool(len(self.anchors) and len(self.negatives) and (~self.same).any())


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def relative_answers(
    positives: np.ndarray,
    negatives: np.ndarray,
    found: np.ndarray | None = None,
    params: ConsolidationParams = ConsolidationParams(),
) -> RelativeAnswers:
    """The (anchor, positive, negative) answers of a session. ``positives`` are faces the user
    found like the person (similar, near miss, the seed), ``negatives`` the rest of the
    labelled faces, ``found`` the face they said was the person, when they did."""
    d = np.asarray(positives).shape[-1] if len(positives) else np.asarray(negatives).shape[-1]
    pos = _unit_rows(np.asarray(positives, np.float32).reshape(-1, d))
    neg = _unit_rows(np.asarray(negatives, np.float32).reshape(-1, d))[-params.max_examples :]
    anchor = None if found is None else _unit_rows(np.asarray(found, np.float32).reshape(1, d))
    if len(pos):
        # The person's own face vouches for the positives near it too.
        known = pos if anchor is None else np.concatenate([pos, anchor])
        pos = pos[corroboration(known, params.corroboration_threshold)[: len(pos)] > 0]
    pos = pos[-params.max_examples :]
    if anchor is not None:
        anchors = anchor
        same = np.zeros((1, len(pos)), bool)
    else:
        # Each positive stands for the person in turn; the newest are nearest to it.
        anchors = pos[-params.max_anchors :]
        same = np.zeros((len(anchors), len(pos)), bool)
        same[np.arange(len(anchors)), np.arange(len(pos) - len(anchors), len(pos))] = True
    return RelativeAnswers(anchors, pos, neg, same)


def relative_loss(
    weight: torch.Tensor, answers: RelativeAnswers, params: ConsolidationParams
) -> torch.Tensor:
    """L(W) of the module docstring."""
    eye = torch.eye(weight.shape[0], dtype=weight.dtype)
    loss = params.identity_pull * ((weight - eye) ** 2).sum()
    if not answers.usable:
        return loss
    za = F.normalize(torch.from_numpy(answers.anchors) @ weight.T, dim=1)
    zp = F.normalize(torch.from_numpy(answers.positives) @ weight.T, dim=1)
    zn = F.normalize(torch.from_numpy(answers.negatives) @ weight.T, dim=1)
    t = params.temperature
    s_ap = za @ zp.T  # (a, p)
    s_an = za @ zn.T  # (a, n)
    margin = (s_an[:, None, :] - s_ap[:, :, None]) / t  # (a, p, n)
    keep = torch.from_numpy(~answers.same)[:, :, None].expand_as(margin)
    return loss + t * F.softplus(margin[keep]).mean()


def consolidate(
    weight: np.ndarray, answers: RelativeAnswers, params: ConsolidationParams
) -> tuple[np.ndarray, int]:
    """The stored head after one session's answers, and the steps taken (0: nothing to learn,
    the head is returned as it was)."""
    if not answers.usable or params.steps <= 0:
        return weight, 0
    w = torch.tensor(weight, dtype=torch.float32, requires_grad=True)
    opt = torch.optim.Adam([w], lr=params.learning_rate)
    deadline = time.perf_counter() + params.time_budget_s
    steps = 0
    for _ in range(params.steps):
        opt.zero_grad()
        relative_loss(w, answers, params).backward()
        opt.step()
        steps += 1
        if time.perf_counter() > deadline:
            break
    out = w.detach().numpy().astype(np.float32)
    if not np.isfinite(out).all():  # never store a broken head
        return weight, 0
    return out, steps
