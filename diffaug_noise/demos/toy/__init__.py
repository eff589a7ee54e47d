"""The 25-Gaussians toy: a plain GAN drops modes; the same GAN with diffusion noise covers them."""
from ..grid import grid_means, mode_metrics, sample_grid
from .train import METHODS, ToySettings, train_toy

ToyConfig = ToySettings  # the earlier name (CHANGELOG)

__all__ = ["METHODS", "ToyConfig", "ToySettings", "grid_means", "mode_metrics", "sample_grid", "train_toy"]
