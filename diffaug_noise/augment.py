"""Differentiable augmentation applied *before* the diffusion noise (``--aug diffaug``).

DiffAugment (Zhao et al. 2020), policy ``color,translation,cutout``, built from kornia's
augmentations; images are in [-1, 1] as GANs feed them to D:

- color: additive brightness in ±0.5 (±0.25 in kornia's [0, 1] units), saturation x[0, 2], contrast x[0.5, 1.5];
- translation: up to 1/8 of the side, zero fill (kornia interpolates bilinearly; DiffAugment shifts by whole pixels);
- cutout: one square of half the side, set to 0 (mid-grey).

Each sample gets its own parameters; gradients flow to the input, so G learns through it.

Example:
    >>> import torch
    >>> aug = DiffAugment()
    >>> x = torch.zeros(4, 3, 16, 16, requires_grad=True)
    >>> y = aug(x)
    >>> y.shape, y.requires_grad
    (torch.Size([4, 3, 16, 16]), True)
"""
from __future__ import annotations

import torch
from torch import nn

from .extras import require


class DiffAugment(nn.Module):
    """``color,translation,cutout`` DiffAugment on ``[B, C, H, W]`` images in [-1, 1] (kornia)."""

    def __init__(
        self,
        translation: float = 0.125,  # largest shift, as a share of the side
        cutout: float = 0.5,  # side of the cut-out square, as a share of the image side
    ):
        super().__init__()
        K = require("kornia.augmentation", "aug")  # imported on use: the core layer does not need kornia

        self.pipeline = K.AugmentationSequential(
            K.ColorJiggle(brightness=0.25, contrast=0.5, saturation=1.0, p=1.0),
            K.RandomAffine(degrees=0.0, translate=(translation, translation), padding_mode="zeros", p=1.0),
            K.RandomErasing(scale=(cutout**2, cutout**2), ratio=(1.0, 1.0), value=0.5, p=1.0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"DiffAugment needs images [B, 1 or 3, H, W]; got shape {tuple(x.shape)}")
        zero_one = (x + 1) / 2
        if x.shape[1] == 1:  # colour ops need RGB
            return self.pipeline(zero_one.expand(-1, 3, -1, -1))[:, :1] * 2 - 1
        return self.pipeline(zero_one) * 2 - 1
