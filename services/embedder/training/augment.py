"""Training-time augmentation on batches (kornia, on the training device)."""

from __future__ import annotations

import kornia.augmentation as K
import torch
from kornia.color import rgb_to_grayscale
from kornia.filters import gaussian_blur2d
from torch import nn

# What old footage does to faces (the archival mode), shared by the training augmenter and the
# fixed degradation of evaluation images (``archival_degrade``).
ARCHIVAL_BLUR_KERNEL = (5, 5)
ARCHIVAL_BLUR_SIGMA = (0.3, 1.5)  # drawn uniformly per image
ARCHIVAL_GRAIN_STD = 0.04  # Gaussian noise on 0..1 pixels


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
            K.RandomGaussianBlur(ARCHIVAL_BLUR_KERNEL, ARCHIVAL_BLUR_SIGMA, p=0.5),
            K.RandomGaussianNoise(std=ARCHIVAL_GRAIN_STD, p=0.5),
        ]
    return K.AugmentationSequential(*ops)


def augment(aug: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``images`` as the model reads them (0..255); kornia works on 0..1."""
    return aug(images / 255.0).clamp(0.0, 1.0) * 255.0


def archival_degrade(images: torch.Tensor, seeds: list[int]) -> torch.Tensor:
    """The archival augmenter's three steps, all applied: grey, then blur, then grain, as an
    evaluation set of old footage needs them. Each image's blur and grain come from its own
    seed, so an image degrades the same way in every run and whatever batch it is in.
    ``images`` as the model reads them (0..255)."""
    if len(seeds) != len(images):
        raise ValueError(f"{len(images)} images but {len(seeds)} seeds")
    x = rgb_to_grayscale(images / 255.0).expand(-1, 3, -1, -1)
    sigmas, grain = [], []
    low, high = ARCHIVAL_BLUR_SIGMA
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        sigmas.append(low + (high - low) * float(torch.rand((), generator=g)))
        grain.append(torch.randn(x.shape[1:], generator=g) * ARCHIVAL_GRAIN_STD)
    sigma = torch.tensor(sigmas, dtype=x.dtype, device=x.device)[:, None].expand(-1, 2)
    x = gaussian_blur2d(x, ARCHIVAL_BLUR_KERNEL, sigma)
    x = x + torch.stack(grain).to(x.device, x.dtype)
    return x.clamp(0.0, 1.0) * 255.0
