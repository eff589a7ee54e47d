"""Diffusion-GAN on an unmodified NVlabs/stylegan3 checkout (``--cfg stylegan3-t|stylegan3-r|stylegan2``), patched at
run time.

Upstream's ``main`` builds its config ``c`` and hands it to ``train.launch_training``, which the
skeleton wraps (:class:`~..skeleton.StyleGANAdapter`) so that ``c`` names our D and loss, each building
upstream's own class inside:

- the kit's :class:`~..kit.DiffusionDiscriminator` around ``training.networks_stylegan2.Discriminator``
  (what all three configs train): ``t`` enters through D's label input (``c' = [c, e(t)]``, through
  upstream's mapping network: an unconditional run gains a t embedding, a class-conditional run
  keeps its labels and adds ``t``), the noise and the image count are D's buffers;
- :class:`DiffusionStyleGAN3Loss`: upstream's ``StyleGAN2Loss``, whose ``run_D`` blurs, augments and
  then calls D; it is given a D that noises first (:class:`NoisedD`), so every phase sees
  ``D(noise(augment(blur(x))), c, t)`` and R1 is taken through all of it, as upstream writes it. Its
  ``accumulate_gradients`` has no ``sync``, so the rounds of a step are counted.

StyleGAN3 does not wrap D in DDP: it all-reduces the gradients itself and, at every snapshot,
``check_ddp_consistency`` asserts that every D buffer is the same on all ranks. D's buffers hold
only ``p``, ``T``, the tables and the image count, which the all-reducing controller keeps
identical; the controller's per-rank accumulators live in the loss.

Resume: upstream's ``--resume`` restarts kimg, tick and iteration, and switches off the EMA ramp-up,
the blur ramp (``blur_init_sigma = 0``) and ADA's speed (``ada_kimg = 100``). With a snapshot this
adapter wrote, the run goes on instead: kimg, tick, iteration, ADA ``p``, the blur ramp and the
controller's step, from the snapshot and the same command without ``--resume`` (:func:`~..progress.continue_run`).

Tested against upstream commit c233a919a6faee6e36a316ddd4eddababad1adf9 (2023-04-26).
"""
from __future__ import annotations

import dataclasses

from ..adapter_settings import knob
from ..kit import DiffusionDiscriminator, TimestepLabelSettings
from ..shims import float_adam_betas_patch, pkg_resources_patch
from ..skeleton import ObservedRunDLoss, StyleGANAdapter
from ..spec import Upstream

STYLEGAN3 = Upstream(
    name="stylegan3",
    clone="git clone https://github.com/NVlabs/stylegan3",
    env_var="DIFFAUG_NOISE_STYLEGAN3_REPO",
    tested_commits=("c233a919a6faee6e36a316ddd4eddababad1adf9",),
    markers=("train.py", "training/training_loop.py", "training/loss.py", "training/networks_stylegan2.py",
             "training/networks_stylegan3.py", "torch_utils/misc.py"),
    names={"train": ["main", "launch_training", "subprocess_fn"], "training.training_loop": ["training_loop"],
           "training.loss": ["StyleGAN2Loss"], "training.networks_stylegan2": ["Discriminator"],
           "torch_utils.misc": ["InfiniteSampler", "check_ddp_consistency"], "torch_utils.training_stats": ["report"],
           "torch_utils.ops.bias_act": ["_init"], "torch_utils.ops.upfirdn2d": ["_init"],
           "torch_utils.ops.filtered_lrelu": ["_init"], "legacy": ["load_network_pkl"], "dnnlib.util": ["open_url"]},
    import_shims=(pkg_resources_patch,),
)


@dataclasses.dataclass
class StyleGAN3Settings(TimestepLabelSettings):
    """The paper's knobs and how ``t`` reaches D (:class:`~..kit.TimestepLabelSettings`); upstream's ``--aug``
    augments."""

    preset: str = knob("paper", "Noise and controller settings: the paper's, or the official StyleGAN2 fork's "
                                "(docs/reference-quirks.md).", kind=str, choices=("paper", "stylegan2"))


class NoisedD:
    """What upstream's loss calls as D: ``D(noise(img), c, t)``, so the noise comes after its blur and augmentation."""

    def __init__(self, D):
        self.D = D

    def __call__(self, img, c, **kwargs):
        y, t = self.D.noise(img)
        return self.D(y, c, t, **kwargs)


class DiffusionStyleGAN3Loss(ObservedRunDLoss):
    """Upstream's ``StyleGAN2Loss`` seeing D through :class:`NoisedD`; its real logits drive the controller."""

    keywords = ("real_c", "gen_z", "gen_c", "gain", "cur_nimg")  # no sync: the rounds are counted

    def upstream_arguments(self, upstream_kwargs: dict) -> dict:
        return {**upstream_kwargs, "D": NoisedD(upstream_kwargs["D"])}


class StyleGAN3Adapter(StyleGANAdapter):
    name = "stylegan3"
    title = "Diffusion-StyleGAN3"
    upstream = STYLEGAN3
    settings_class = StyleGAN3Settings
    t_input = "label"
    signal = "sign"
    discriminator = DiffusionDiscriminator
    loss = DiffusionStyleGAN3Loss
    ops = ("bias_act", "upfirdn2d", "filtered_lrelu")
    resume_loss_keys = ("blur_init_sigma",)  # the blur ramp, which upstream's resume switches off
    description = ("D sees D(noise(augment(blur(x))), c, t) in every phase (--cfg stylegan3-t, stylegan3-r or "
                   "stylegan2), t entering through D's label input (a conditional run keeps its labels and adds t); "
                   "the controller adapts T identically on every GPU and D's buffers stay rank-identical, as "
                   "upstream's snapshot check demands. Upstream's train.py needs --cfg, --batch and --gamma.")
    example = ("--repo ~/stylegan3 --data afhq_cat --outdir runs --gpus 8 -- --cfg stylegan3-t --batch 32 --gamma 8.2 "
               "--mirror 1")
    cpu_note = "-- --cfg stylegan2 --batch 4 --gamma 1 --kimg 1 --cbase 1024 --cmax 32 --map-depth 2 --metrics none"

    def shims(self, settings: StyleGAN3Settings) -> list:
        """stylegan3 c233a91's own shims, after the skeleton's (:meth:`~..skeleton.StyleGANAdapter.compat_patches`),
        which load its ``bias_act``, ``upfirdn2d`` and ``filtered_lrelu``.

        - ``pkg_resources`` (gone from setuptools) for its gradfix ops: :func:`~..shims.pkg_resources_patch`,
          applied before upstream is imported (``STYLEGAN3.import_shims``);
        - ``train.py``'s Adam ``betas=[0, 0.99]`` mixes an int and a float, which torch >= 2 rejects: with
          ``--cfg stylegan3-t/-r`` G has no lazy regularisation to turn them into floats, so G's optimiser
          fails to build (:func:`~..shims.float_adam_betas_patch`).
        (Its ``conv2d_gradfix`` and ``grid_sample_gradfix`` check the torch version themselves.)
        """
        from training import training_loop

        return float_adam_betas_patch(training_loop)


__all__ = ["STYLEGAN3", "DiffusionDiscriminator", "DiffusionStyleGAN3Loss", "NoisedD", "StyleGAN3Adapter",
           "StyleGAN3Settings"]
