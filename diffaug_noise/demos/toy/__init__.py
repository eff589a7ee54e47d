"""The 25-Gaussians toy: a plain GAN drops modes; the same GAN with diffusion noise covers them."""
from ..grid import grid_means, mode_metrics, sample_grid
from .train import METHODS, ToyConfig, train_toy

__all__ = ["METHODS", "ToyConfig", "grid_means", "mode_metrics", "sample_grid", "train_toy"]
