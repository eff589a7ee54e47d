"""Diffusion InsGen on an unmodified genforce/insgen checkout, patched at run time.

InsGen is stylegan2-ada-pytorch plus instance discrimination: contrastive heads on D's features
(``run_cl`` calls ``D(img, c, return_feats=True)`` and a momentum copy ``D_ema``). The patch is the
StyleGAN2-ADA one (:mod:`.stylegan2_ada`, whose loss passes InsGen's contrastive keywords on): the
adversarial branch sees ``D(noise(ADA(x)), c, t)``, and the contrastive branch keeps working as
upstream intends: it calls ``D`` without ``t``, which our discriminator reads as clean images
(``t = 0``), on upstream's ADA views. That is what the
official Diffusion-InsGen fork does too (its ``run_cl`` passes ``t = 0`` to ``D`` and ``D_ema``);
``D_ema`` is a copy of our discriminator, so it takes the same label. InsGen needs ADA (its
contrastive views come from the ADA pipe), so ``aug="ada"`` is the default here.

Tested against upstream commit 52bda7cfe59094fbb2f533a0355fff1392b0d380 (2021-10-11).
"""
from __future__ import annotations

import dataclasses

import torch

from ..adapter_settings import knob
from ..shims import single_rank_group_patch, tensor_cuda_patch
from ..spec import Upstream
from .stylegan2_ada import AUGS, STYLEGAN2_ADA, StyleGAN2Adapter, StyleGAN2Settings

INSGEN = Upstream(
    name="insgen",
    clone="git clone https://github.com/genforce/insgen",
    env_var="DIFFAUG_NOISE_INSGEN_REPO",
    tested_commits=("52bda7cfe59094fbb2f533a0355fff1392b0d380",),
    markers=STYLEGAN2_ADA.markers + ("training/contrastive_loss.py", "training/contrastive_head.py"),
    names={**STYLEGAN2_ADA.names, "training.contrastive_loss": ["StyleGAN2LossCL"],
           "training.contrastive_head": ["CLHead"],
           "torch_utils.misc": STYLEGAN2_ADA.names["torch_utils.misc"] + ["copy_params_and_buffers"]},
)


@dataclasses.dataclass
class InsGenSettings(StyleGAN2Settings):
    """StyleGAN2's settings; InsGen needs ADA (its contrastive views come from the ADA pipe)."""

    aug: str = knob("ada", "Augmentation before the noise: upstream's ADA (InsGen's contrastive views need it), "
                           "DiffAugment or none.", kind=str, choices=AUGS)


def _itself(self):
    return self


class InsGenAdapter(StyleGAN2Adapter):
    name = "insgen"
    title = "Diffusion-InsGen"
    upstream = INSGEN
    settings_class = InsGenSettings
    description = ("StyleGAN2's patch (D sees D(noise(ADA(x)), c, t), t through the label input); the contrastive "
                   "branch calls D without t, read as clean images (t = 0), as the official Diffusion-InsGen fork "
                   "does.")
    example = "--repo ~/insgen --data ffhq_2k --outdir runs --gpus 4 --preset insgen -- --cfg paper256 --mirror 1"

    def shims(self, settings: InsGenSettings) -> list:
        """InsGen 52bda7c's shims: stylegan2-ada's (:meth:`.StyleGAN2Adapter.shims`), plus

        - its contrastive head calls ``tensor.cuda(device)`` with the features' device: without CUDA
          that is a move to the CPU;
        - its contrastive queue all-gathers across ranks even with ``--gpus 1``, where upstream starts
          no process group: we start a one-rank group around ``train.subprocess_fn``;
        - its snapshot code unwraps the heads with ``.module`` even when they were not DDP-wrapped
          (``--gpus 1``): a bare head answers ``.module`` with itself;
        - ``--resume`` copies snapshot weights into the contrastive heads, whose parameters require
          grad, in place and outside ``no_grad`` ("a leaf Variable that requires grad is being used in
          an in-place operation"): the copy runs under ``torch.no_grad()``.
        So upstream InsGen runs and resumes on one GPU (or the CPU), which as released it does not.
        """
        import train
        from torch_utils import misc
        from training import contrastive_head

        return (super().shims(settings) + tensor_cuda_patch() + single_rank_group_patch(train)
                + [(contrastive_head.CLHead, "module", property(_itself)),
                   (misc, "copy_params_and_buffers", torch.no_grad()(misc.copy_params_and_buffers))])


__all__ = ["INSGEN", "InsGenAdapter", "InsGenSettings"]
