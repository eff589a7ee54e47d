"""Diffusion StyleGAN2 on an unmodified NVlabs/stylegan2-ada-pytorch checkout, patched at run time.

Upstream builds its discriminator and loss from class names in its training options
(``dnnlib.util.construct_class_by_name``). The skeleton (:class:`~..skeleton.StyleGANAdapter`) wraps
``train.setup_training_loop_kwargs`` so those names point at two classes, each of which builds
upstream's own class inside:

- :class:`~..kit.DiffusionDiscriminator` (the kit's): upstream's ``Discriminator`` with its label
  input widened by an encoding of ``t`` (``c' = [c, e(t)]``, through upstream's own label mapping
  network), and the :class:`~diffaug_noise.DiffusionNoise` as a submodule, so ``p``, ``T`` and the
  tables are buffers of ``D``: saved in every snapshot, restored by upstream's ``--resume`` and
  copied to all ranks when upstream wraps ``D`` in DDP (we also broadcast them from rank 0 explicitly).
- :class:`DiffusionStyleGAN2Loss`: upstream's loss object with its ``run_D`` replaced, so both the D and
  the G phases see ``D(noise(augment(x)), c, t)``; R1 stays upstream's (taken w.r.t. the clean
  reals, through the noise). It observes the logits of the reals and runs the
  :class:`~diffaug_noise.AdaptiveController` once per iteration (after the last round of the D
  phase, upstream's ``sync``); the controller all-reduces its statistics, so every rank adjusts ``p``
  identically.

Resume (``resume_progress``, on by default): D also counts the images trained on (a buffer, so
snapshots carry it). From a snapshot with a count, ``--resume`` goes on where the run stopped:
the loop's kimg, tick and iteration index (:mod:`..progress`), upstream's ADA ``p``, the EMA
ramp-up and the controller's step, identically on every rank (they travel in the training
options). A snapshot without one (a pretrained network) is weights only, as upstream resumes.

Augmentation before the noise (``aug``): ``"ada"`` keeps upstream's ADA pipeline and its own
adaptive ``p`` (as the official fork allows), ``"diffaug"`` applies
:class:`~diffaug_noise.augment.DiffAugment`, ``"none"`` neither.

Tested against upstream commit d72cc7d041b42ec8e806021a205ed9349f87c6a4 (2023-09-22).
"""
from __future__ import annotations

import dataclasses

from diffaug_noise.conditioning import RawTimestep  # noqa: F401  (snapshots of earlier versions name it here)

from ..adapter_settings import knob
from ..kit import DiffusionDiscriminator, LossSettings, TimestepLabelSettings
from ..shims import grid_sample_patch
from ..skeleton import StyleGANAdapter, StyleGANLoss
from ..spec import Upstream

STYLEGAN2_ADA = Upstream(
    name="stylegan2-ada-pytorch",
    clone="git clone https://github.com/NVlabs/stylegan2-ada-pytorch",
    env_var="DIFFAUG_NOISE_STYLEGAN2_REPO",
    tested_commits=("d72cc7d041b42ec8e806021a205ed9349f87c6a4",),
    markers=("train.py", "training/training_loop.py", "training/loss.py", "training/networks.py",
             "torch_utils/misc.py"),
    names={"train": ["main", "setup_training_loop_kwargs", "subprocess_fn"],
           "training.training_loop": ["training_loop"],
           "training.loss": ["StyleGAN2Loss"], "training.networks": ["Discriminator"],
           "torch_utils.misc": ["ddp_sync", "InfiniteSampler"], "torch_utils.training_stats": ["report", "report0"],
           "torch_utils.ops.grid_sample_gradfix": ["grid_sample"], "torch_utils.ops.bias_act": ["_init"],
           "torch_utils.ops.upfirdn2d": ["_init"], "legacy": ["load_network_pkl"], "dnnlib.util": ["open_url"]},
)

AUGS = ("ada", "diffaug", "none")


@dataclasses.dataclass
class StyleGAN2Settings(TimestepLabelSettings):
    """The paper's knobs, how ``t`` reaches D (:class:`~..kit.TimestepLabelSettings`), and what augments before the
    noise."""

    preset: str = knob("paper", "Noise and controller settings: the paper's, or an official fork's "
                                "(docs/reference-quirks.md).",
                       kind=str, choices=("paper", "stylegan2", "insgen"))
    aug: str = knob("ada", "Augmentation before the noise: upstream's ADA, DiffAugment or none.", kind=str,
                    choices=AUGS)


@dataclasses.dataclass(frozen=True)
class StyleGAN2LossSettings(LossSettings):
    aug: str = "ada"  # StyleGAN2Settings.aug


class DiffusionStyleGAN2Loss(StyleGANLoss):
    """Upstream's loss with ``run_D`` replaced: ``D(noise(augment(img)), c, t)``; drives the controller."""

    keywords = ("real_c", "gen_z", "gen_c", "sync", "gain")
    settings_class = StyleGAN2LossSettings

    def __init__(self, upstream_class: str, diffusion: dict | None = None, **upstream_kwargs):
        from torch_utils import misc  # upstream's, importable while it runs

        super().__init__(upstream_class, diffusion, **upstream_kwargs)
        self.diffaugment = None
        if self.settings.aug == "diffaug":
            from diffaug_noise.augment import DiffAugment

            self.diffaugment = DiffAugment()
        self.inner.run_D = self.run_D
        self._ddp_sync = misc.ddp_sync

    def run_D(self, img, c, sync):
        real = self.is_real(img)  # before augmentation makes new tensors
        if self.inner.augment_pipe is not None:
            img = self.inner.augment_pipe(img)
        if self.diffaugment is not None:
            img = self.diffaugment(img)
        y, t = self.noise(img)
        with self._ddp_sync(self.D, sync):
            logits = self.D(y, c, t)
        if real:
            self.controller.observe(logits)
        return logits


DiffusionLoss = DiffusionStyleGAN2Loss  # its name in the training options of earlier versions


class StyleGAN2Adapter(StyleGANAdapter):
    name = "stylegan2"
    title = "Diffusion-StyleGAN2"
    upstream = STYLEGAN2_ADA
    settings_class = StyleGAN2Settings
    entry = "setup_training_loop_kwargs"
    t_input = "label"
    signal = "sign"
    discriminator = DiffusionDiscriminator
    loss = DiffusionStyleGAN2Loss
    description = ("D sees D(noise(augment(x)), c, t) in both phases, with t entering through D's label input; the "
                   "controller adapts T identically on every GPU, and p/T live in D's buffers, so snapshots, --resume, "
                   "metrics and generate.py work as upstream's.")
    example = ("--repo ~/stylegan2-ada-pytorch --data lsun_bedroom --outdir runs --gpus 8 -- --cfg paper256 "
               "--mirror 1")
    cpu_note = ("-- --cfg cifar --fp32 1 --batch 4 --kimg 1 --metrics none: about 4 minutes to tick 0 and 7 s an "
                "iteration on 2 cores, since upstream cannot narrow its networks; `run stylegan3 ... -- --cfg "
                "stylegan2 --cbase 1024 --cmax 32 --map-depth 2` checks the same configuration in about a minute")

    def prepare(self, args, settings: StyleGAN2Settings) -> None:
        """Upstream's ADA runs before the noise at the forks' speed, or is switched off for DiffAugment or none."""
        if settings.aug == "ada":
            args.ada_kimg = 100  # every official fork runs ADA at 100 kimg (upstream's loop default is 500)
        else:
            args.augment_kwargs, args.ada_target, args.augment_p = None, None, 0

    def loss_settings(self, settings: StyleGAN2Settings, batch_size: int, rounds: int | None = None) -> dict:
        return {**super().loss_settings(settings, batch_size, rounds), "aug": settings.aug}

    def shims(self, settings: StyleGAN2Settings) -> list:
        """stylegan2-ada d72cc7d's own shim, after the skeleton's (:meth:`~..skeleton.StyleGANAdapter.compat_patches`).

        ``torch_utils.ops.grid_sample_gradfix`` disables its custom op on torch != 1.7/1.8 and falls
        back to ``F.grid_sample``, which on CUDA cannot be differentiated twice: R1 through ADA's
        geometric augmentations fails ("derivative for aten::grid_sampler_2d_backward is not
        implemented"). :class:`~..shims.GridSampleTwice` provides the second derivative.
        (``conv2d_gradfix`` falls back to ``F.conv2d``, which is twice differentiable; Adam's betas become
        floats through lazy regularisation.)
        """
        from torch_utils.ops import grid_sample_gradfix

        return grid_sample_patch(grid_sample_gradfix)


__all__ = ["STYLEGAN2_ADA", "DiffusionDiscriminator", "DiffusionLoss", "DiffusionStyleGAN2Loss", "StyleGAN2Adapter",
           "StyleGAN2Settings"]
