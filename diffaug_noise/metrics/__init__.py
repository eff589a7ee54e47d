"""Scores of generated images: FID/KID/precision/recall through torch-fidelity (:mod:`.evaluation`, imported on
use: it needs the ``eval`` extra), the Fréchet distance itself (:mod:`.frechet`) and the papers' protocols
(:mod:`.protocols`).

Feature extractors come from a registry (:data:`.evaluation.FEATURE_EXTRACTORS`); each registers
explicitly, and nothing here imports a demo (the digits demo registers ``digits-classifier`` with
:func:`diffaug_noise.demos.digits.fidelity.register`).
"""
from .frechet import feature_statistics, frechet_distance
from .protocols import METRICS, PROTOCOLS

__all__ = ["METRICS", "PROTOCOLS", "feature_statistics", "frechet_distance"]
