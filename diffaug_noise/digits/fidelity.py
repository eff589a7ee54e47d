"""FD_digits inside torch-fidelity: the digits classifier registered as feature extractor ``digits-classifier``.

With it, ``diffaug-noise eval --real digits --fake FOLDER --feature-extractor digits-classifier``
computes the same FD_digits as ``diffaug-noise run digits`` reports for the same images (FID
with this extractor *is* FD_digits), and KID or precision/recall in the same feature space.
``weights`` (``--weights``) is ignored: the classifier comes from its cache, or is retrained.
"""
from __future__ import annotations

import torch
from torch_fidelity import register_feature_extractor
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from .classifier import load_classifier

NAME = "digits-classifier"


class DigitsFeatureExtractor(FeatureExtractorBase):
    """uint8 images ``[B, 3, H, W]`` → the classifier's 64 penultimate features (``"features"``) or logits."""

    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)
        self.classifier = load_classifier()

    @staticmethod
    def get_provided_features_list():
        return ("features", "logits")

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return "logits" if metric == "isc" else "features"

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 8, 8, dtype=torch.uint8)

    def forward(self, x):
        features = self.classifier.features(x)
        by_name = {"features": features, "logits": self.classifier.head(features)}
        return tuple(by_name[name] for name in self.features_list)


if NAME not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor(NAME, DigitsFeatureExtractor)
