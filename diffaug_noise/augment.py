r"""Differentiable augmentation applied *before* the diffusion noise (``--aug diffaug``).

DiffAugment (Zhao et al. 2020), policy ``color,translation,cutout``, as batched tensor ops (no
per-sample Python, no kornia); images are in [-1, 1] as GANs feed them to D and are worked on in
[0, 1], where the law is stated. Per sample, independently:

- color, the three steps in a random order (each of the 6 orders equally likely), every step
  clamped to [0, 1]: brightness :math:`x + b`, :math:`b \sim U(-0.25, 0.25)`; contrast
  :math:`c\,x`, :math:`c \sim U(0.5, 1.5)`; saturation :math:`s \sim U(0, 2)` scales the HSV
  saturation (``max - r (max - x)`` per pixel with ``r = min(s S, 1) / S``; grey images are unchanged);
- translation by :math:`(t_x, t_y) \sim U(-\tau W, \tau W) \times U(-\tau H, \tau H)` pixels,
  bilinear, zero fill;
- cutout: one square of side ``round(cutout * sqrt(H W))`` at a uniform integer position inside
  the image, set to 0.5 (0, mid-grey, in [-1, 1]).

That is the law of kornia's ``ColorJiggle(0.25, 0.5, 1.0)``, ``RandomAffine(translate=τ)`` and
``RandomErasing(scale=cutout², ratio=1, value=0.5)`` in sequence, which this module was first built
from, per sample (kornia draws one order of the color steps per call; here each sample draws its
own, so that batches of independent runs stay independent). ``tests/core/test_augment.py`` checks
the ops against kornia's for the same parameters, and the parameters' law. Gradients flow to the
input (through the clamps' active range), so G learns through it.

Example:
    >>> import torch
    >>> aug = DiffAugment()
    >>> x = torch.zeros(4, 3, 16, 16, requires_grad=True)
    >>> y = aug(x, generator=torch.Generator().manual_seed(0))
    >>> y.shape, y.requires_grad
    (torch.Size([4, 3, 16, 16]), True)
"""
from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

BRIGHTNESS, CONTRAST, SATURATION = 0.25, (0.5, 1.5), (0.0, 2.0)  # kornia's ColorJiggle(0.25, 0.5, 1.0)
ORDERS = tuple(itertools.permutations(range(3)))  # of the color steps: 0 brightness, 1 contrast, 2 saturation


class DiffAugment(nn.Module):
    """``color,translation,cutout`` DiffAugment on ``[B, C, H, W]`` images in [-1, 1]."""

    def __init__(
        self,
        translation: float = 0.125,  # largest shift, as a share of the side
        cutout: float = 0.5,  # side of the cut-out square, as a share of the image side (0: no cutout)
    ):
        super().__init__()
        if not 0 <= translation < 1:
            raise ValueError(f"translation must be in [0, 1); got {translation!r}")
        if not 0 <= cutout <= 1:
            raise ValueError(f"cutout must be in [0, 1]; got {cutout!r}")
        self.translation, self.cutout = translation, cutout

    def generate_parameters(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        """Draw every sample's parameters for images like ``x``: the law in the module docstring."""
        B, _, H, W = x.shape
        side = int(min(max(round(self.cutout * math.sqrt(H * W)), 1), H, W)) if self.cutout else 0

        def uniform(low, high, *shape):
            return torch.rand(B, *shape, generator=generator, device=x.device, dtype=torch.float64) * (high - low) + low

        return {
            "brightness": uniform(-BRIGHTNESS, BRIGHTNESS),
            "contrast": uniform(*CONTRAST),
            "saturation": uniform(*SATURATION),
            "order": torch.randint(len(ORDERS), (B,), generator=generator, device=x.device),  # an index into ORDERS
            "shift": uniform(-self.translation, self.translation, 2) * torch.tensor([W, H], device=x.device),
            "cutout": (uniform(0, 1, 2) * torch.tensor([W - side + 1, H - side + 1], device=x.device)).floor().long(),
            "side": side,
        }

    def apply_transform(self, x: torch.Tensor, params: dict) -> torch.Tensor:
        """``x`` augmented with the given parameters (from :meth:`generate_parameters`); not ``apply``, which
        ``nn.Module.apply(fn)`` is (weight-init code calls it on every submodule)."""
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"DiffAugment needs images [B, 1 or 3, H, W]; got shape {tuple(x.shape)}")
        B, C, H, W = x.shape
        zero_one = ((x + 1) / 2).clamp(0, 1)
        factors = [params[name].to(x.dtype).view(B, 1, 1, 1) for name in ("brightness", "contrast", "saturation")]
        steps = (lambda v, f: (v + f).clamp(0, 1), lambda v, f: (v * f).clamp(0, 1),
                 _saturate if C == 3 else (lambda v, f: v))  # grey has no saturation
        y = torch.zeros_like(zero_one)
        for index, order in enumerate(ORDERS):  # each sample's steps in its order, one sub-batch per order
            members = (params["order"] == index).nonzero().squeeze(1)
            if len(members):
                v = zero_one[members]
                for step in order:
                    v = steps[step](v, factors[step][members])
                y = y.index_copy(0, members, v)
        y = _translate(y, params["shift"].to(y.dtype))
        rows, cols = torch.arange(H, device=x.device).view(1, H, 1), torch.arange(W, device=x.device).view(1, 1, W)
        x0, y0, side = params["cutout"][:, 0].view(B, 1, 1), params["cutout"][:, 1].view(B, 1, 1), params["side"]
        box = (cols >= x0) & (cols < x0 + side) & (rows >= y0) & (rows < y0 + side)
        y = y.masked_fill(box.unsqueeze(1), 0.5)
        return y * 2 - 1

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.apply_transform(x, self.generate_parameters(x, generator))


def _saturate(rgb: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """HSV saturation times ``factor`` (clamped to 1), hue and value kept: ``max - r (max - x)``, ``r = S' / S``."""
    top = rgb.amax(dim=1, keepdim=True)
    saturation = (top - rgb.amin(dim=1, keepdim=True)) / top.clamp_min(1e-8)
    ratio = torch.where(saturation > 0, (saturation * factor).clamp(max=1) / saturation.clamp_min(1e-8),
                        torch.ones_like(saturation))
    return (top - ratio * (top - rgb)).clamp(0, 1)


def _translate(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Shift each image by ``shift [B, 2]`` pixels (x, y): bilinear, zero fill."""
    B, _, H, W = images.shape
    theta = torch.zeros(B, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2], theta[:, 1, 2] = -2 * shift[:, 0] / W, -2 * shift[:, 1] / H  # output pixel p reads p - shift
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
