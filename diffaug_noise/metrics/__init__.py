"""Scores of generated images: FID/KID/precision/recall through torch-fidelity (:mod:`.evaluation`, imported on
use: it needs the ``eval`` extra), the Fréchet distance itself (:mod:`.frechet`) and the papers' protocols
(:mod:`.protocols`).

Feature extractors come from a registry (:data:`.evaluation.FEATURE_EXTRACTORS`): torch-fidelity's, and
``digits-classifier`` (:mod:`.digits_extractor`: FD_digits, the score of the digits demo, whose classifier
is :mod:`.digits_classifier`). Nothing here imports a demo; the digits demo imports its score from here.
"""
from .frechet import feature_statistics, frechet_distance
from .protocols import METRICS, PROTOCOLS

__all__ = ["METRICS", "PROTOCOLS", "feature_statistics", "frechet_distance"]
