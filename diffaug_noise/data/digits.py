"""scikit-learn's bundled handwritten digits: 1,797 real 8x8 images, no download.

The UCI optical-recognition digits (Alpaydin & Kaynak, 1998) as scikit-learn ships them: 4-bit
grey levels ``0..16``, ten classes of about 180 images each. They are a small *real* dataset,
the regime where a discriminator overfits: with 200 training images a plain GAN collapses to a
digit or two within a few thousand steps (docs/digits.md).

Images come back as float32 ``[N, 1, R, R]`` in ``[-1, 1]`` (``v / 8 - 1``), upsampled bilinearly
when ``resolution > 8``. scikit-learn is imported only here (``pip install 'diffaug-noise[digits]'``).

Example:
    >>> images, labels = load_digits()
    >>> images.shape, labels.shape, float(images.min()), float(images.max())
    (torch.Size([1797, 1, 8, 8]), torch.Size([1797]), -1.0, 1.0)
    >>> train = stratified_subset(labels, 200, seed=0)
    >>> len(train), torch.bincount(labels[train]).tolist()
    (200, [20, 20, 20, 20, 20, 20, 20, 20, 20, 20])
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..extras import require
from .errors import DatasetError

NATIVE_RESOLUTION = 8
NUM_CLASSES = 10
MAX_LEVEL = 16  # scikit-learn's digits are 4-bit counts 0..16


def _sklearn_digits():
    return require("sklearn.datasets", "digits").load_digits()


def load_digits(resolution: int = NATIVE_RESOLUTION) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as float32 ``[N, 1, R, R]`` in ``[-1, 1]`` and their int64 labels ``[N]``."""
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < NATIVE_RESOLUTION:
        raise DatasetError(f"digits resolution must be an int >= {NATIVE_RESOLUTION}; got {resolution!r}")
    bunch = _sklearn_digits()
    images = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32)).unsqueeze(1) / (MAX_LEVEL / 2) - 1
    if resolution != NATIVE_RESOLUTION:
        images = F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False)
    return images, torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))


def stratified_subset(labels: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """Indices of ``size`` images with the classes as balanced as ``size`` allows, drawn by ``seed``.

    Each class gets ``size // 10`` images, and the ``size % 10`` remaining ones go to classes
    chosen by the same seed; within a class the images are a seeded permutation's first ones.
    Sorted, so the subset does not depend on the order the classes were visited in.
    """
    n = len(labels)
    if isinstance(size, bool) or not isinstance(size, int) or not (NUM_CLASSES <= size <= n):
        raise DatasetError(f"train size must be an int between {NUM_CLASSES} and {n} (one image per class at "
                           f"least, all digits at most); got {size!r}")
    rng = np.random.default_rng(seed)
    labels_np = labels.numpy()
    per_class = np.full(NUM_CLASSES, size // NUM_CLASSES)
    per_class[rng.permutation(NUM_CLASSES)[: size % NUM_CLASSES]] += 1
    chosen = []
    for digit in range(NUM_CLASSES):
        members = np.flatnonzero(labels_np == digit)
        if per_class[digit] > len(members):
            raise DatasetError(f"train size {size} asks for {per_class[digit]} images of digit {digit}, which has "
                               f"{len(members)}; use a train size of at most "
                               f"{NUM_CLASSES * min(np.bincount(labels_np))}")
        chosen.append(rng.permutation(members)[: per_class[digit]])
    return torch.from_numpy(np.sort(np.concatenate(chosen)))


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """``[-1, 1]`` images as the uint8 levels an image file stores: ``round(127.5 x + 127.5)``, clamped."""
    return (images * 127.5 + 127.5).round().clamp(0, 255).to(torch.uint8)
