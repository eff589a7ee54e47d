"""Classifier guidance on the 25 Gaussians: a small DDPM, a noise-aware classifier, samples per guidance scale."""
from .train import CLASSES, GuidanceSettings, train_guidance

GuidanceConfig = GuidanceSettings  # the earlier name (CHANGELOG)

__all__ = ["CLASSES", "GuidanceConfig", "GuidanceSettings", "train_guidance"]
