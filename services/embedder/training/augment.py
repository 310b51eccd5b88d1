"""Training-time augmentation on batches (kornia, on the training device)."""

from __future__ import annotations

import kornia.augmentation as K
import torch
from torch import nn


def augmenter(archival: bool = False) -> nn.Module:
    """Mild geometric jitter (the crops are already aligned: large moves would teach the model
    misalignment), photometric jitter; ``archival`` adds what old footage does to faces:
    grey, grain and blur."""
    ops: list[nn.Module] = [
        K.RandomHorizontalFlip(),
        K.RandomAffine(degrees=4.0, translate=(0.03, 0.03), scale=(0.95, 1.05), p=0.5),
        K.ColorJitter(0.3, 0.3, 0.2, 0.0, p=0.5),
        K.RandomGrayscale(p=0.1),
    ]
    if archival:
        ops += [
            K.RandomGrayscale(p=0.8),
            K.RandomGaussianBlur((5, 5), (0.3, 1.5), p=0.5),
            K.RandomGaussianNoise(std=0.04, p=0.5),
        ]
    return K.AugmentationSequential(*ops)


def augment(aug: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``images`` as the model reads them (0..255); kornia works on 0..1."""
    return aug(images / 255.0).clamp(0.0, 1.0) * 255.0
