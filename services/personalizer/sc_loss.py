"""SCLoss, the separating-cluster contrastive loss that trains a user's head.

FaIRCoP (Gupta et al., WACV 2023) names the loss but does not publish it; this is our form.
With z = normalize(W x) for every labelled face, P the positives ("similar"), N the negatives
("dissimilar", or shown and left unlabelled), mu+ = normalize(mean_{p in P} z_p) and
mu- = normalize(mean_{n in N} z_n):

    L(W) =  1/|P| sum_p  -log( e^{z_p.mu+/t} / (e^{z_p.mu+/t} + sum_n e^{z_p.z_n/t}) )   (pull)
          + 1/|N| sum_n  relu( z_n.mu+ - z_n.mu- + m )                                   (separate)
          + rho ||W - W_0||_F^2                                                          (anchor)

The pull term is supervised InfoNCE with the positive centroid as the positive key: each
positive must be closer to its own cluster than to any negative. The separate term is a margin
between the clusters: each negative must sit at least m closer to the negative centroid than to
the positive one. The anchor pulls W toward W_0, the head the session started from (the
user's lasting head, consolidation.py; the identity for a new user), so that a few clicks
cannot collapse the embedding nor wash out what earlier sessions taught. Any of P or N may be
empty:
its terms are then left out (with neither there is nothing to learn and the loss is the anchor).

Wrong answers: each positive may carry a weight w_p in (0, 1] (its credibility,
answer_model.py); mu+ is then the w-weighted mean and the pull term the w-weighted average, so
a "similar" that the other answers contradict neither drags the cluster nor is pulled into it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class SCLossParams:
    temperature: float = 0.1
    margin: float = 0.2
    anchor: float = 0.05


def sc_loss(
    weight: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    params: SCLossParams = SCLossParams(),
    pos_weights: torch.Tensor | None = None,
    reference: torch.Tensor | None = None,
) -> torch.Tensor:
    """L(W) above for positives (p, d) and negatives (n, d) of the frozen embedding, the
    positives weighted by ``pos_weights`` (p,) when given, anchored to ``reference`` (W_0;
    None = the identity)."""
    if reference is None:
        reference = torch.eye(weight.shape[0], dtype=weight.dtype)
    loss = params.anchor * ((weight - reference) ** 2).sum()
    zp = F.normalize(positives @ weight.T, dim=1) if len(positives) else None
    zn = F.normalize(negatives @ weight.T, dim=1) if len(negatives) else None
    if zp is None:
        return loss
    w = torch.ones(len(zp), dtype=zp.dtype) if pos_weights is None else pos_weights
    w = w / w.sum()
    mu_pos = F.normalize((w[:, None] * zp).sum(0), dim=0)
    t = params.temperature
    pos_logit = (zp @ mu_pos / t).unsqueeze(1)  # (p, 1)
    if zn is not None:
        neg_logits = zp @ zn.T / t  # (p, n)
        logits = torch.cat([pos_logit, neg_logits], dim=1)
        loss = loss + (w * (torch.logsumexp(logits, dim=1) - pos_logit.squeeze(1))).sum()
        mu_neg = F.normalize(zn.mean(0), dim=0)
        loss = loss + F.relu(zn @ mu_pos - zn @ mu_neg + params.margin).mean()
    else:
        # Only positives: tighten their cluster.
        loss = loss + (w * (1.0 - zp @ mu_pos)).sum()
    return loss
