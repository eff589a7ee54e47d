"""Diffusion-GAN on an unmodified brownvc/R3GAN checkout (Huang et al., NeurIPS 2024), patched at run time.

R3GAN is StyleGAN3's skeleton with a relativistic loss, ``softplus(-(D(real) - D(fake)))`` plus R1 on
the reals and R2 on the fakes, and no ADA: its augmentation probability follows a fixed schedule.
Its ``R3GANLoss`` hands ``AdversarialTraining`` a ``Preprocessor`` (the augmentation) that every
sample goes through before ``Discriminator(Preprocessor(x), c)``. Here:

- the kit's :class:`~..kit.DiffusionDiscriminator` around upstream's ``training.networks.Discriminator``:
  ``t`` joins D's condition (``c' = [c, e(t)]`` through R3GAN's own condition embedding and
  projection; an unconditional run gains the embedding it lacked), the noise and the image count
  are D's buffers;
- :class:`DiffusionR3GANLoss`: the noise goes after R3GAN's augmentation, as its ``Preprocessor``; a
  real and the fake it is compared with share ``t`` (``pair_t``, default on: the relativistic logit
  then compares them at one noise level), each with its own ``eps``; the penalties are taken where
  upstream writes them, w.r.t. the clean samples, through augmentation, noise and D; the
  relativistic signal ``E[sign(D(real_i) - D(fake_i))]`` drives the controller, with the paper's
  target translated (:func:`~diffaug_noise.controller.relativistic_target`, 0.766), once per step
  after the D phase's last round (counted: upstream passes no sync).

Resume: R3GAN's snapshots carry ``cur_nimg`` and both optimisers, but its loop restarts tick and
iteration; of a snapshot this adapter wrote, the run goes on from its tick and iteration too, with the
controller's step and ``p`` (:func:`~..progress.continue_run`).

Tested against upstream commit 19a7ddf463fbac2bd39b4c1c73d63f1c441c7403 (2025-01-23).
"""
from __future__ import annotations

import dataclasses

import torch

from diffaug_noise.controller import relativistic_target
from diffaug_noise.settings import setting

from ..adapter_settings import knob
from ..kit import DiffusionDiscriminator, LossSettings, TimestepLabelSettings
from ..shims import float_adam_betas_patch, pkg_resources_patch
from ..skeleton import StyleGANAdapter, StyleGANLoss
from ..spec import Upstream

R3GAN = Upstream(
    name="R3GAN",
    clone="git clone https://github.com/brownvc/R3GAN",
    env_var="DIFFAUG_NOISE_R3GAN_REPO",
    tested_commits=("19a7ddf463fbac2bd39b4c1c73d63f1c441c7403",),
    markers=("train.py", "training/training_loop.py", "training/loss.py", "training/networks.py", "R3GAN/Trainer.py",
             "torch_utils/misc.py"),
    names={"train": ["main", "launch_training", "subprocess_fn"], "training.training_loop": ["training_loop"],
           "training.loss": ["R3GANLoss"], "training.networks": ["Discriminator"],
           "R3GAN.Trainer": ["AdversarialTraining"], "torch_utils.training_stats": ["report"],
           "torch_utils.ops.bias_act": ["_init"], "torch_utils.ops.upfirdn2d": ["_init"],
           "legacy": ["load_network_pkl"], "dnnlib.util": ["open_url"]},
    import_shims=(pkg_resources_patch,),
)


@dataclasses.dataclass
class R3GANSettings(TimestepLabelSettings):
    """The paper's knobs for a relativistic D: its target translated, ``t`` through D's condition, pairs sharing
    ``t``."""

    preset: str = knob("paper", "Noise and controller settings: the paper's.", kind=str, choices=("paper",))
    target: float | None = setting("target", None, note="Here the relativistic signal's, r_d = E[sign(D(noised "
                                                         "real_i) - D(noised fake_i))]. [default: the preset's target "
                                                         "translated to it, 2 Phi(sqrt 2 Phi^-1((1 + 0.6) / 2)) - 1 = "
                                                         "0.766 (docs/method.md)]")
    t_label: str | None = knob("embedding", "How t enters D's condition: sinusoids of t (R3GAN embeds its condition "
                                            "linearly, without bias, so a raw t would vanish at t = 0).",
                               kind=str, choices=("embedding",))
    pair_t: bool = knob(True, "A real and the fake it is compared with share t (the relativistic logit compares them "
                              "at one noise level); off: each draws its own.", kind=bool)

    def controller_kwargs(self) -> dict:
        kwargs = super().controller_kwargs()
        return {**kwargs, "target": relativistic_target(kwargs["target"]) if self.target is None else self.target}


@dataclasses.dataclass(frozen=True)
class R3GANLossSettings(LossSettings):
    pair_t: bool = True  # R3GANSettings.pair_t


class DiffusionR3GANLoss(StyleGANLoss):
    """Upstream's ``R3GANLoss`` with the noise as its ``Preprocessor`` and ``t`` to D; the relativistic signal."""

    keywords = ("real_c", "gen_z", "gamma", "gain")  # no sync: the rounds are counted
    settings_class = R3GANLossSettings

    def __init__(self, upstream_class: str, diffusion: dict | None = None, **upstream_kwargs):
        super().__init__(upstream_class, diffusion, **upstream_kwargs)
        self.pair_t = self.settings.pair_t
        self._augment, self.inner.preprocessor = self.inner.preprocessor, self.preprocess
        self.inner.trainer.Discriminator = self.discriminate
        self._pair, self._next, self._logits = None, None, []  # this pair's t; the t of D's next call; (real?, logits)

    def preprocess(self, x):
        """Upstream's augmentation, then the noise: a pair's second member takes the first one's ``t``."""
        real = self.is_real(x)
        y = self._augment(x)
        t = self._pair if self._pair is not None else self.noise.sample_t(y.shape[0], y.device)
        if self.pair_t:
            self._pair = t
        self._next = (t, real)
        return self.noise.apply_transform(y, t, torch.randn_like(y), check_t=False)  # t from sample_t: no host sync

    def discriminate(self, y, c):
        """What upstream's trainer calls as D: ``D(y, c, t)`` with the ``t`` :meth:`preprocess` drew for ``y``."""
        t, real = self._next
        logits = self.D(y, c, t)
        self._logits.append((real, logits))
        return logits

    def round_ran(self, phase: str) -> None:
        """The D phase's real and fake logits, pair by pair, to the relativistic signal."""
        calls, self._logits, self._pair = self._logits, [], None
        if phase in self.d_phases:
            (real,), (fake,) = ([logits for is_real, logits in calls if is_real is side] for side in (True, False))
            self.controller.observe(real, fake)


class R3GANAdapter(StyleGANAdapter):
    name = "r3gan"
    title = "Diffusion-R3GAN"
    upstream = R3GAN
    settings_class = R3GANSettings
    d_phases = ("D",)
    t_input = "label"
    signal = "relativistic"
    discriminator = DiffusionDiscriminator
    loss = DiffusionR3GANLoss
    batch_gpu_key = "d_batch_gpu"
    description = ("The noise is R3GAN's Preprocessor after its augmentation; D sees D(noise(augment(x)), c, t) with "
                   "t through its condition embedding, a real and the fake it is compared with share t, R1 and R2 are "
                   "taken through the noise as upstream writes them, and the relativistic signal "
                   "E[sign(D(real) - D(fake))] drives the controller (R3GAN has no ADA). Upstream's train.py needs "
                   "--preset and --batch.")
    example = ("--repo ~/R3GAN --data cifar10 --outdir runs --gpus 8 -- --preset CIFAR10 --batch 512 --mirror 1 "
               "--aug 1 --cond 1 --tick 1 --snap 200")
    cpu_note = ("-- --preset CIFAR10 --batch 4 --kimg 1 --metrics none (upstream's networks are large: minutes per "
                "tick on a CPU)")

    def prepare(self, c, settings: R3GANSettings) -> None:
        """An unconditional run gets the condition embedding a conditional one has, for t."""
        if "ConditionEmbeddingDimension" not in c.D_kwargs:
            c.D_kwargs.ConditionEmbeddingDimension = c.D_kwargs.WidthPerStage[-1]  # what upstream gives --cond 1

    def loss_settings(self, settings: R3GANSettings, batch_size: int, rounds: int | None = None) -> dict:
        return {**super().loss_settings(settings, batch_size, rounds), "pair_t": settings.pair_t}

    def shims(self, settings: R3GANSettings) -> list:
        """R3GAN 19a7ddf's own shims, after the skeleton's (:meth:`~..skeleton.StyleGANAdapter.compat_patches`:
        its ``Sampler.__init__(None)``, CUDA, the ops ``bias_act``, in every residual block, and ``upfirdn2d``).

        - ``pkg_resources`` (gone from setuptools) for its gradfix ops: :func:`~..shims.pkg_resources_patch`,
          applied before upstream is imported (``R3GAN.import_shims``);
        - ``train.py``'s Adam ``betas=[0, 0]`` are two ints, which torch >= 2 refuses ("betas must be either
          both floats or both Tensors"): upstream as released does not build its optimisers
          (:func:`~..shims.float_adam_betas_patch`; its loop sets ``(0, beta2)`` itself at every step).
        """
        from training import training_loop

        return float_adam_betas_patch(training_loop)


__all__ = ["R3GAN", "DiffusionDiscriminator", "DiffusionR3GANLoss", "R3GANAdapter", "R3GANSettings"]
