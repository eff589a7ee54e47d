"""Real limited data: GANs on a few hundred of scikit-learn's 8x8 digits, scored with FD_digits.

The regime the paper is about: with 200 training images a plain GAN's D memorises them and G
collapses; the same GAN with the diffusion noise keeps covering the digits (docs/digits.md).
"""
from ...metrics.digits_classifier import DigitsClassifier, load_classifier, train_classifier
from .train import METHODS, DigitsSettings, train_digits

DigitsConfig = DigitsSettings  # the earlier name (CHANGELOG)

__all__ = ["METHODS", "DigitsClassifier", "DigitsConfig", "DigitsSettings", "load_classifier", "train_classifier",
           "train_digits"]
