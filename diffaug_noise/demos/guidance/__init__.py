"""Classifier guidance on the 25 Gaussians: a small DDPM, a noise-aware classifier, samples per guidance scale."""
from .train import CLASSES, GuidanceConfig, train_guidance

__all__ = ["CLASSES", "GuidanceConfig", "train_guidance"]
