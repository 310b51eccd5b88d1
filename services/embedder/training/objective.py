"""The CoReFace training objective (METHODS.md section 4): ArcFace on two dropout views of each
image plus CoReFace's sample-guided contrastive regularisation between the views.

ArcFace itself is pytorch-metric-learning's ``ArcFaceLoss`` (scale 64, margin 0.5 rad); only the
contrastive term, which no maintained library provides, is written here.
"""

from __future__ import annotations

import math

import torch
from pytorch_metric_learning import losses
from torch import nn
from torch.nn import functional as F

from facesearch_server.embedder.training.sface_torch import SFaceNet

ARC_SCALE = 64.0
ARC_MARGIN_RAD = 0.5
VIEW_WEIGHT = 0.5  # each of the two ArcFace terms
CONTRASTIVE_WEIGHT = 0.05
CONTRASTIVE_SCALE = 64.0
MARGIN_SMOOTHING = 0.9  # the adaptive margin is a running mean over batches


class ContrastiveRegularizer(nn.Module):
    """CE over the scaled view-to-view cosine matrix, each image's own other view the target.

    C_ij = cos(x1_i, x2_j); other images of the same identity are masked out (they are not
    negatives); the diagonal is lowered by an adaptive margin m, the smoothed batch mean of
    C_ii - max_{j != i} C_ij, so the term keeps pushing as the views grow apart from others.
    """

    def __init__(
        self, scale: float = CONTRASTIVE_SCALE, smoothing: float = MARGIN_SMOOTHING
    ) -> None:
        super().__init__()
        self.scale = scale
        self.smoothing = smoothing
        self.register_buffer("margin", torch.zeros(()))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        c = F.normalize(x1, dim=1) @ F.normalize(x2, dim=1).T
        n = c.shape[0]
        eye = torch.eye(n, dtype=torch.bool, device=c.device)
        same_identity = (labels[:, None] == labels[None, :]) & ~eye
        c = c.masked_fill(same_identity, float("-inf"))  # out of the softmax entirely
        with torch.no_grad():
            hardest = c.masked_fill(eye, float("-inf")).max(dim=1).values
            has_negative = torch.isfinite(hardest)
            if self.training and has_negative.any():
                gap = (c.diagonal()[has_negative] - hardest[has_negative]).mean().clamp(min=0)
                self.margin.mul_(self.smoothing).add_((1 - self.smoothing) * gap)
        logits = self.scale * (c - self.margin * eye)
        return F.cross_entropy(logits, torch.arange(n, device=c.device))


class CoReFaceObjective(nn.Module):
    """0.5 ArcFace(x1) + 0.5 ArcFace(x2) + w L_con; w = 0 is the ArcFace-only baseline (same
    two views, so the comparison isolates the regulariser)."""

    def __init__(
        self, num_classes: int, dim: int, contrastive_weight: float = CONTRASTIVE_WEIGHT
    ) -> None:
        super().__init__()
        # pytorch-metric-learning takes the angular margin in degrees.
        self.arcface = losses.ArcFaceLoss(
            num_classes, dim, margin=math.degrees(ARC_MARGIN_RAD), scale=ARC_SCALE
        )
        self.regularizer = ContrastiveRegularizer()
        self.contrastive_weight = contrastive_weight

    @torch.no_grad()
    def init_class_centres(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """Start each class weight at its identity's mean embedding: the pretrained encoder
        already separates people, so training refines instead of first learning random
        centres (which on a few steps would only raise the loss)."""
        w = torch.zeros_like(self.arcface.W)  # dim x classes
        w.index_add_(1, labels, F.normalize(embeddings, dim=1).T)
        self.arcface.W.copy_(F.normalize(w, dim=0))

    def forward(
        self, net: SFaceNet, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        fmap = net.feature_map(images)
        x1, x2 = net.embed(fmap, drop=True), net.embed(fmap, drop=True)
        a1, a2 = self.arcface(x1, labels), self.arcface(x2, labels)
        total = VIEW_WEIGHT * a1 + VIEW_WEIGHT * a2
        parts = {"arcface": float((a1 + a2).detach()) / 2}
        if self.contrastive_weight > 0:
            con = self.regularizer(x1, x2, labels)
            total = total + self.contrastive_weight * con
            parts["contrastive"] = float(con.detach())
            parts["margin"] = float(self.regularizer.margin)
        parts["loss"] = float(total.detach())
        return total, parts

    @torch.no_grad()
    def eval_loss(self, net: SFaceNet, images: torch.Tensor, labels: torch.Tensor) -> float:
        """ArcFace loss without dropout or augmentation: comparable across steps and runs."""
        return float(self.arcface(net.embed(net.feature_map(images), drop=False), labels))
