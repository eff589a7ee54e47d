"""diffaug-noise: Diffusion-GAN (Wang et al. 2022) as one composable layer.

Noise real and fake samples with the same adaptive forward diffusion before the discriminator,
condition the discriminator on the timestep, and let a controller adapt the diffusion length.

>>> import torch, diffaug_noise as dn
>>> noise = dn.DiffusionNoise()                       # the paper's defaults
>>> ctrl = dn.AdaptiveController(noise, batch_size=8)
>>> y, t = noise(torch.randn(8, 3, 32, 32))
"""
import os as _os
import sys as _sys

if "torch" not in _sys.modules:  # OpenMP reads it when torch loads it: idle threads sleep instead of spinning
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning cost 5-12x on a shared CPU (docs/performance.md)

from . import theory  # noqa: E402
from .attached import AttachedConditioning, Blind, TimestepChannels, TimestepFiLM  # noqa: E402
from .aware import LOSSES, DiffusionAwareDiscriminator  # noqa: E402
from .conditioning import (
    CONDITIONINGS,
    AdaGroupNorm,
    RawTimestep,
    TimestepConditionedDiscriminator,
    TimestepEmbedding,
    TimestepLabel,
    TimestepProjectionHead,
)
from .controller import SIGNALS, AdaptiveController, relativistic_target
from .noise import DiffusionNoise
from .presets import PRESETS
from .schedules import SCHEDULES, alphas_cumprod, beta_schedule, diffusion_tables, posterior_variance
from .timesteps import T_DISTS, projected_gan_clean_prob, timestep_law

__version__ = "0.1.0"

__all__ = [
    "CONDITIONINGS",
    "LOSSES",
    "AdaGroupNorm",
    "AdaptiveController",
    "AttachedConditioning",
    "Blind",
    "DiffusionAwareDiscriminator",
    "DiffusionNoise",
    "PRESETS",
    "RawTimestep",
    "SCHEDULES",
    "SIGNALS",
    "T_DISTS",
    "TimestepChannels",
    "TimestepConditionedDiscriminator",
    "TimestepEmbedding",
    "TimestepFiLM",
    "TimestepLabel",
    "TimestepProjectionHead",
    "alphas_cumprod",
    "beta_schedule",
    "diffusion_tables",
    "posterior_variance",
    "projected_gan_clean_prob",
    "relativistic_target",
    "theory",
    "timestep_law",
]
