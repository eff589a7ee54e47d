"""Diffusion ProjectedGAN on an unmodified autonomousvision/projected-gan checkout, patched at run time.

Here the noise is domain-agnostic: it is applied to the discriminator's *features* (the four
EfficientNet-lite0 feature maps), not to pixels. Upstream builds D and the loss from class names in
its config ``c``; the skeleton (:class:`~..skeleton.StyleGANAdapter`) wraps ``train.launch_training`` so
that, after upstream's ``main`` has built ``c``, the names point at two classes here, each building
upstream's own class inside:

- :class:`DiffusionProjectedDiscriminator`: upstream's ``ProjectedDiscriminator`` run step by step
  (DiffAugment, resize to 224, backbone, projections, mini-discriminators) with
  :class:`~diffaug_noise.DiffusionNoise` on each of the four feature maps, either as they leave the
  pretrained backbone, before the random cross-channel/cross-scale projections (``d_pos="first"``,
  the official fork's default) or after them (``"last"``). One noise module (one ``p``/``T``) serves
  all four maps, each with its own draws; with the ``projected_gan`` preset ``t`` is drawn per sample
  and channel and the noised share follows ``min(round(64p), 48)/64``, as in the fork. ``p``, ``T``
  and the tables are buffers of D: snapshots carry them, upstream's resume restores them on rank 0
  and upstream's own start-up broadcast copies D's buffers to every rank.
- :class:`DiffusionProjectedGANLoss`: upstream's ``ProjectedGANLoss`` whose ``run_D`` also reports the
  real logits to the :class:`~diffaug_noise.AdaptiveController` (:class:`~..skeleton.ObservedRunDLoss`).
  Upstream's training loop has no ADA code, so the loss drives it: after the last accumulation round
  of each iteration's D phase (``batch / (batch_gpu * gpus)`` rounds, the same count on every rank)
  the controller's ``update()`` runs and all-reduces its statistics, so ``p`` moves every
  ``interval`` iterations, identically on all ranks.

The official fork never gives ``t`` to the discriminators; ``t_to_d=True`` (our extension, off in
the preset) draws one ``t`` per sample for all four maps and feeds it to upstream's class-conditional
mini-discriminators as a one-hot class label (their embedding has 1000 classes, so ``t_max < 1000``;
unconditional runs only).

Resume is upstream's: its loop stores its progress in ``network-snapshot.pkl`` and restores it on
every rank when the same command runs again in the same ``--outdir``; ``p`` and ``T`` are D's buffers.

Tested against upstream commit e1c246b8bdce4fac3c2bfcb69df309fc27df9b86 (2022-03-31).
"""
from __future__ import annotations

import dataclasses
import pathlib

import torch
import torch.nn.functional as F
from torch import nn

from diffaug_noise.noise import DiffusionNoise

from ..adapter_settings import DiffusionSettings, knob
from ..patching import construct
from ..shims import BackboneTimm, float_adam_betas_patch, plain_conv2d_patch, timm_backbone_patch
from ..skeleton import ObservedRunDLoss, StyleGANAdapter
from ..spec import Upstream, UpstreamError

PROJECTED_GAN = Upstream(
    name="projected-gan",
    clone="git clone https://github.com/autonomousvision/projected-gan",
    env_var="DIFFAUG_NOISE_PROJECTEDGAN_REPO",
    tested_commits=("e1c246b8bdce4fac3c2bfcb69df309fc27df9b86",),
    markers=("train.py", "training/training_loop.py", "training/loss.py", "pg_modules/discriminator.py",
             "pg_modules/projector.py", "torch_utils/misc.py"),
    names={"train": ["main", "launch_training", "subprocess_fn"], "training.training_loop": ["training_loop"],
           "training.loss": ["ProjectedGANLoss"], "pg_modules.discriminator": ["ProjectedDiscriminator"],
           "pg_modules.projector": ["F_RandomProj", "_make_efficientnet", "timm"],
           "pg_modules.diffaug": ["DiffAugment"],
           "torch_utils.misc": ["InfiniteSampler"], "torch_utils.training_stats": ["report"],
           "torch_utils.ops.bias_act": ["_init"], "torch_utils.ops.upfirdn2d": ["_init"],
           "torch_utils.ops.conv2d_gradfix": ["_should_use_custom_op"]},
)
D_POSITIONS = ("first", "last")
FASTGAN_MIN_RESOLUTION = 128  # FastGAN's generator leaves its output undefined below 128 px
MINI_D_CLASSES = 1000  # upstream's conditional mini-discriminators embed c.argmax(1) over a fixed 1000 classes


@dataclasses.dataclass
class FeatureDiffusionSettings(DiffusionSettings):
    """The paper's knobs (:class:`~.adapter_settings.DiffusionSettings`) for feature-space noise, plus where and how."""

    preset: str = knob("projected_gan", "Noise and controller settings: the official fork's (projected_gan) or the "
                                        "paper's image defaults.", kind=str, choices=("projected_gan", "paper"))
    d_pos: str = knob("first", "Noise the backbone's feature maps before the random projections (first) or after them "
                               "(last).",
                      kind=str, choices=D_POSITIONS)
    t_to_d: bool = knob(False, "Feed t to the mini-discriminators (our extension; needs --preset paper).", kind=bool)
    pretrained: bool = knob(True, "ImageNet weights for the EfficientNet backbone; off (random) is for mechanics tests "
                                  "only.",
                            kind=bool)
    backbone_weights: str | None = knob(None, "Local tf_efficientnet_lite0 state dict for offline machines (instead of "
                                              "timm's hub).", kind="path")

    def __post_init__(self):
        super().__post_init__()
        if self.t_to_d and self.noise_kwargs()["per_channel"]:
            raise ValueError("t_to_d needs one t per sample; the preset draws t per channel (use preset='paper')")
        if self.t_to_d and self.noise_kwargs()["t_max"] >= MINI_D_CLASSES:
            raise ValueError(f"t_to_d labels t as one of upstream's {MINI_D_CLASSES} classes: t_max must be < "
                             f"{MINI_D_CLASSES}")
        if self.backbone_weights is not None and not pathlib.Path(self.backbone_weights).expanduser().is_file():
            raise ValueError(f"backbone_weights {self.backbone_weights!r} does not exist")


class DiffusionProjectedDiscriminator(nn.Module):
    """Upstream's ``ProjectedDiscriminator`` with diffusion noise on its four feature maps."""

    def __init__(
        self,
        upstream_class: str = "pg_modules.discriminator.ProjectedDiscriminator",  # what upstream's config named
        noise_kwargs: dict | None = None,  # DiffusionNoise settings
        d_pos: str = "first",  # "first": before the random projections; "last": after
        t_to_d: bool = False,  # one-hot t as the mini-discriminators' class label
        **upstream_kwargs,  # everything upstream's config gives its discriminator
    ):
        super().__init__()
        self.noise = DiffusionNoise(**(noise_kwargs or {}))
        self.d_pos, self.t_to_d = d_pos, t_to_d
        if t_to_d:
            backbone = dict(upstream_kwargs.get("backbone_kwargs", {}))
            if backbone.get("cond"):
                raise ValueError("t_to_d uses the mini-discriminators' class input; it cannot be combined with --cond")
            upstream_kwargs["backbone_kwargs"] = {**backbone, "cond": 1}
        self.D = construct(upstream_class, **upstream_kwargs)

    @property
    def feature_network(self):  # upstream's loop freezes it by this name in the D phases
        return self.D.feature_network

    def _noise_maps(self, maps: dict) -> tuple[dict, torch.Tensor | None]:
        if not self.t_to_d:
            return {k: self.noise(v)[0] for k, v in maps.items()}, None
        first = next(iter(maps.values()))
        t = self.noise.sample_t(first.shape[0], first.device)
        return {k: self.noise.apply_transform(v, t, torch.randn_like(v), check_t=False) for k, v in maps.items()}, t

    def features(self, x: torch.Tensor) -> tuple[dict, torch.Tensor | None]:
        """The four projected feature maps, noised at ``d_pos``, and the shared ``t`` (``t_to_d`` only)."""
        net = self.D.feature_network
        if self.d_pos == "last":
            return self._noise_maps(net(x))
        out0 = net.pretrained.layer0(x)
        out1 = net.pretrained.layer1(out0)
        out2 = net.pretrained.layer2(out1)
        out3 = net.pretrained.layer3(out2)
        maps, t = self._noise_maps({"0": out0, "1": out1, "2": out2, "3": out3})
        if net.proj_type == 0:
            return maps, t
        scratch = net.scratch
        mixed = {k: getattr(scratch, f"layer{k}_ccm")(v) for k, v in maps.items()}
        if net.proj_type == 1:
            return mixed, t
        out3 = scratch.layer3_csm(mixed["3"])
        out2 = scratch.layer2_csm(out3, mixed["2"])
        out1 = scratch.layer1_csm(out2, mixed["1"])
        out0 = scratch.layer0_csm(out1, mixed["0"])
        return {"0": out0, "1": out1, "2": out2, "3": out3}, t

    def forward(self, x, c):
        from pg_modules.diffaug import DiffAugment  # upstream's, importable while it runs

        if self.D.diffaug:
            x = DiffAugment(x, policy="color,translation,cutout")
        if self.D.interp224:
            x = F.interpolate(x, 224, mode="bilinear", align_corners=False)
        maps, t = self.features(x)
        if t is not None:
            c = F.one_hot(t, MINI_D_CLASSES).to(x.dtype)
        return self.D.discriminator(maps, c)


class DiffusionProjectedGANLoss(ObservedRunDLoss):
    """Upstream's loss; its ``run_D`` also feeds the real logits to the controller, updated once per iteration."""

    keywords = ("real_c", "gen_z", "gen_c", "gain", "cur_nimg")  # no sync: the rounds are counted


class ProjectedGANAdapter(StyleGANAdapter):
    name = "projectedgan"
    title = "Diffusion ProjectedGAN"
    upstream = PROJECTED_GAN
    settings_class = FeatureDiffusionSettings
    t_input = "features"
    signal = "sign"
    resume = "upstream"
    discriminator = DiffusionProjectedDiscriminator
    loss = DiffusionProjectedGANLoss
    description = ("The noise goes on the discriminator's features: the four EfficientNet-lite0 maps, before the "
                   "random projections (--d-pos first, the fork's default) or after them (last); upstream's loop has "
                   "no ADA, so the loss drives the controller. Upstream's train.py needs --cfg and --batch; FastGAN "
                   "needs 128 px or more (use --cfg stylegan2 below).")
    example = "--repo ~/projected-gan --data lsun_church --outdir runs --gpus 8 -- --cfg fastgan --batch 64"
    cpu_note = ("--no-pretrained -- --cfg stylegan2 --cbase 1024 --cmax 32 --batch 4 --kimg 1 --metrics none (any "
                "resolution; about 6 minutes on 2 cores: EfficientNet at 224 px dominates and --kimg 1 is upstream's "
                "shortest run)")

    def prepare(self, c, settings: FeatureDiffusionSettings) -> None:
        """FastGAN below 128 px is refused: its output is undefined there."""
        if "fastgan" in str(c.G_kwargs.get("class_name")) and c.training_set_kwargs.resolution < FASTGAN_MIN_RESOLUTION:
            raise UpstreamError(f"FastGAN (--cfg fastgan/fastgan_lite) supports {FASTGAN_MIN_RESOLUTION} px and up; "
                                f"this dataset is {c.training_set_kwargs.resolution} px: use --cfg stylegan2")

    def discriminator_settings(self, settings: FeatureDiffusionSettings) -> dict:
        return dict(noise_kwargs=settings.noise_kwargs(), d_pos=settings.d_pos, t_to_d=settings.t_to_d)

    def run_suffix(self, settings: FeatureDiffusionSettings) -> str:
        return f"diffusion-{settings.preset}-{settings.d_pos}"

    def shims(self, settings: FeatureDiffusionSettings) -> list:
        """projected-gan e1c246b's own shims, after the skeleton's (:meth:`~..skeleton.StyleGANAdapter.compat_patches`).

        - ``pg_modules.projector`` builds its EfficientNet for timm < 0.6 and downloads it from timm's hub
          (:func:`~..shims.timm_backbone_patch`): the layers of timm >= 0.6, a local file
          (``backbone_weights``), or a random backbone (``pretrained=False``), or a failure that says what to do.
        - ``train.py``'s Adam ``betas=[0, 0.99]`` mixes an int and a float, which torch >= 2 rejects
          (:func:`~..shims.float_adam_betas_patch`).
        - ``torch_utils.ops.conv2d_gradfix`` (stylegan3's) fails on torch >= 1.11 on CUDA
          (:func:`~..shims.plain_conv2d_patch`): ``F.conv2d`` instead.
        """
        from pg_modules import projector
        from torch_utils.ops import conv2d_gradfix
        from training import training_loop

        return (float_adam_betas_patch(training_loop) + plain_conv2d_patch(conv2d_gradfix)
                + timm_backbone_patch(projector, settings.pretrained, settings.backbone_weights))


__all__ = ["PROJECTED_GAN", "BackboneTimm", "DiffusionProjectedDiscriminator", "DiffusionProjectedGANLoss",
           "FeatureDiffusionSettings", "ProjectedGANAdapter"]
