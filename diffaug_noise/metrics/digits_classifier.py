"""The digits classifier whose penultimate features define FD_digits, a Fréchet distance for digits.

InceptionV3 knows nothing of 8x8 grey digits and cannot be downloaded here, so the score uses
a network that does: an MLP ``64 → 256 → 64 → 10`` (ReLU) trained on scikit-learn's digits.
FD_digits is the Fréchet distance (:mod:`diffaug_noise.metrics.frechet`) between its 64 penultimate
features of generated and real digits, exactly as FID is for InceptionV3's pool features.

The classifier is trained once, deterministically from ``seed`` (full-batch Adam, no data order
involved), on all 1,797 digits, and cached atomically under the data root as
``digits-classifier-seed{seed}-v{VERSION}.pt``; a missing or unreadable cache is retrained, so
every machine computes the same score. Trained on a stratified half, it classifies the other
half with about 97 % accuracy (``tests/demos/test_digits.py``).

Inputs: images ``[N, C, H, W]``, float in ``[-1, 1]`` or uint8 ``0..255``; colour is averaged to
grey and any resolution is area-averaged to 8x8 (so upsampled digits score like native ones).

Example:
    >>> from diffaug_noise.data.digits import load_digits
    >>> images, labels = load_digits()
    >>> net = train_classifier(images[::2], labels[::2], seed=0)
    >>> accuracy = (net(images[1::2]).argmax(1) == labels[1::2]).float().mean()
    >>> bool(accuracy > 0.95), tuple(net.features(images[:3]).shape)
    (True, (3, 64))
"""
from __future__ import annotations

import os
import pathlib
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ..data.datasets import data_root
from ..data.digits import NATIVE_RESOLUTION, NUM_CLASSES, load_digits

VERSION = 2  # bump when the architecture or the training recipe changes: old caches are then ignored
FEATURES = 64  # width of the penultimate layer, the features FD_digits is computed on
TRAIN_STEPS = 400  # full-batch Adam steps
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 1e-3
MIN_ACCURACY = 0.99  # share of the 1,797 digits a cached classifier must classify right (the trained one: all)


def as_flat_digits(images: torch.Tensor) -> torch.Tensor:
    """``[N, C, H, W]`` images (float in [-1, 1] or uint8) as float32 ``[N, 64]`` grey 8x8 digits in [-1, 1]."""
    if images.ndim != 4:
        raise ValueError(f"images must have shape [N, C, H, W]; got {tuple(images.shape)}")
    x = images.float() / 127.5 - 1 if images.dtype == torch.uint8 else images.float()
    x = x.mean(dim=1, keepdim=True)
    if x.shape[-2:] != (NATIVE_RESOLUTION, NATIVE_RESOLUTION):
        x = F.adaptive_avg_pool2d(x, NATIVE_RESOLUTION)
    return x.flatten(1)


class DigitsClassifier(nn.Module):
    """``64 → 256 → 64 → 10`` ReLU MLP; :meth:`features` is the 64-d penultimate layer."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(NATIVE_RESOLUTION ** 2, 256), nn.ReLU(), nn.Linear(256, FEATURES),
                                  nn.ReLU())
        self.head = nn.Linear(FEATURES, NUM_CLASSES)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``[N, 64]`` of images ``[N, C, H, W]``."""
        return self.body(as_flat_digits(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits ``[N, 10]``."""
        return self.head(self.features(images))


def train_classifier(images: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> DigitsClassifier:
    """Train a :class:`DigitsClassifier` on ``images``/``labels`` by full-batch Adam, deterministically from ``seed``.

    Float64 on one thread (a few seconds), so the weights do not depend on the caller's thread count.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = DigitsClassifier().double()
    x = as_flat_digits(images).double()
    opt = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    # Float64 on one thread: Adam amplifies the rounding differences of multi-threaded float32
    # reductions into weights that differ by 0.2 between thread counts, hence into another score.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(TRAIN_STEPS):
            loss = F.cross_entropy(net.head(net.body(x)), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return net.float().eval().requires_grad_(False)


def cache_path(seed: int = 0, cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Where the classifier trained from ``seed`` is cached (default: the data root)."""
    return pathlib.Path(cache_dir or data_root()).expanduser() / f"digits-classifier-seed{seed}-v{VERSION}.pt"


def load_classifier(seed: int = 0, cache_dir: str | os.PathLike | None = None) -> DigitsClassifier:
    """The classifier trained on all 1,797 digits from ``seed``: from the cache, else trained (a few seconds) and
    cached.

    A cache that is missing, truncated or written for another seed/version is retrained and
    replaced atomically; if the cache folder is not writable the trained network is still returned.
    The data root may be shared, so a cache is used only if its weights are finite and it
    classifies at least :data:`MIN_ACCURACY` of the digits it was trained on (the trained one: all
    of them); one that fails is retrained with a warning. A forger who plants another well-trained
    classifier passes this check: its FD_digits would differ from ours (compare with ``cache_dir``
    a private folder if that matters).
    """
    path = cache_path(seed, cache_dir)
    images, labels = load_digits()
    net = DigitsClassifier()
    try:
        state = load_checkpoint(path)
        if state.get("seed") == seed and state.get("version") == VERSION:
            net.load_state_dict(state["weights"])
            net.eval().requires_grad_(False)
            finite = all(bool(torch.isfinite(w).all()) for w in net.state_dict().values())
            accuracy = float((net(images).argmax(1) == labels).double().mean()) if finite else 0.0
            if accuracy >= MIN_ACCURACY:
                return net
            warnings.warn(f"digits classifier cache {str(path)!r} is not the trained classifier (it classifies "
                          f"{100 * accuracy:.1f} % of the digits, the trained one all); retraining it and replacing "
                          "it", stacklevel=2)
    except (CheckpointError, KeyError, RuntimeError, AttributeError, TypeError):
        pass  # missing or damaged: retrain below
    net = train_classifier(images, labels, seed)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint({"seed": seed, "version": VERSION, "weights": net.state_dict()}, path)
    except OSError:
        pass  # read-only cache: the score is the same, it is only recomputed next time
    return net
