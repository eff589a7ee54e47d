"""diffaug-noise: Diffusion-GAN (Wang et al. 2022) as one composable layer.

Noise real and fake samples with the same adaptive forward diffusion before the discriminator,
condition the discriminator on the timestep, and let a controller adapt the diffusion length.

>>> import torch, diffaug_noise as dn
>>> noise = dn.DiffusionNoise()                       # the paper's defaults
>>> ctrl = dn.AdaptiveController(noise, batch_size=8)
>>> y, t = noise(torch.randn(8, 3, 32, 32))
"""
from . import theory
from .attached import AttachedConditioning, Blind, TimestepChannels, TimestepFiLM
from .aware import LOSSES, DiffusionAwareDiscriminator
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
