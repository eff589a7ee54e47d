"""FD_digits as an `eval` feature extractor: the digits classifier registered as ``digits-classifier``.

With it, ``diffaug-noise eval --real digits --fake FOLDER --feature-extractor digits-classifier``
computes the same FD_digits as ``diffaug-noise run digits`` reports for the same images (FID
with this extractor *is* FD_digits), and KID or precision/recall in the same feature space.
``weights`` (``--weights``) is ignored: the classifier comes from its cache under the data root
(``cache_dir``), or is retrained there. :mod:`.evaluation` registers it under :data:`NAME`.

Example:
    >>> from diffaug_noise.metrics.evaluation import FEATURE_EXTRACTORS
    >>> FEATURE_EXTRACTORS[NAME].cls.get_default_feature_layer_for_metric("fid")
    'features'
"""
from __future__ import annotations

import torch

from ..extras import require
from .digits_classifier import load_classifier

require("torch_fidelity", "eval")  # a missing torch-fidelity names its extra
from torch_fidelity.feature_extractor_base import FeatureExtractorBase  # noqa: E402

NAME = "digits-classifier"


class DigitsFeatureExtractor(FeatureExtractorBase):
    """uint8 images ``[B, 3, H, W]`` → the classifier's 64 penultimate features (``"features"``) or logits."""

    def __init__(self, name, features_list, cache_dir=None, **kwargs):
        super().__init__(name, features_list)
        self.classifier = load_classifier(cache_dir=cache_dir)

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


def build(name, features_list, weights=None, cache_dir=None, trust_pickle=False):
    return DigitsFeatureExtractor(name, list(features_list), cache_dir=cache_dir)
