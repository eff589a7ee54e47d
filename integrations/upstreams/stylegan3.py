"""Diffusion-GAN on an unmodified NVlabs/stylegan3 checkout (``--cfg stylegan3-t|stylegan3-r|stylegan2``), patched at
run time.

Upstream's ``main`` builds its config ``c`` and hands it to ``train.launch_training``, which the kit
wraps (:func:`~.kit.launch_training_patch`) so that ``c`` names our D and loss, each building
upstream's own class inside:

- the kit's :class:`~.kit.DiffusionDiscriminator` around ``training.networks_stylegan2.Discriminator``
  (what all three configs train): ``t`` enters through D's label input (``c' = [c, e(t)]``, through
  upstream's mapping network: an unconditional run gains a t embedding, a class-conditional run
  keeps its labels and adds ``t``), the noise and the image count are D's buffers;
- :class:`DiffusionStyleGAN3Loss`: upstream's ``StyleGAN2Loss``, whose ``run_D`` blurs, augments and
  then calls D; it is given a D that noises first (:class:`NoisedD`), so every phase sees
  ``D(noise(augment(blur(x))), c, t)`` and R1 is taken through all of it, as upstream writes it. Its
  ``accumulate_gradients`` has no ``sync``, so the kit counts the rounds of a step.

StyleGAN3 does not wrap D in DDP: it all-reduces the gradients itself and, at every snapshot,
``check_ddp_consistency`` asserts that every D buffer is the same on all ranks. D's buffers hold
only ``p``, ``T``, the tables and the image count, which the all-reducing controller keeps
identical; the controller's per-rank accumulators live in the loss.

Resume: upstream's ``--resume`` restarts kimg, tick and iteration, and switches off the EMA ramp-up,
the blur ramp (``blur_init_sigma = 0``) and ADA's speed (``ada_kimg = 100``). With a snapshot this
adapter wrote, the run goes on instead: kimg, tick, iteration, ADA ``p``, the blur ramp and the
controller's step, from the snapshot and the same command without ``--resume`` (:func:`~.progress.continue_run`).

Tested against upstream commit c233a919a6faee6e36a316ddd4eddababad1adf9 (2023-04-26).
"""
from __future__ import annotations

import dataclasses
import inspect

from . import kit
from .adapter import Adapter
from .kit import DiffusionDiscriminator, TimestepLabelOptions, launch_training_patch, swap_class
from .options import knob
from .patching import construct
from .progress import continue_run
from .shims import (
    cpu_patches,
    cpu_stats_sync_patch,
    custom_op_fallback_patch,
    float_adam_betas_patch,
    pkg_resources_patch,
    registered_extension_patch,
    sampler_signature_patch,
)
from .spec import Upstream

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
    loop_restarts_progress=True,
    import_shims=(pkg_resources_patch,),
)


@dataclasses.dataclass
class StyleGAN3Options(TimestepLabelOptions):
    """The paper's knobs and how ``t`` reaches D (:class:`~.kit.TimestepLabelOptions`); upstream's ``--aug``
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


class DiffusionStyleGAN3Loss(kit.DiffusionLoss):
    """Upstream's ``StyleGAN2Loss`` seeing D through :class:`NoisedD`; its real logits drive the controller."""

    def __init__(
        self,
        device,  # upstream's
        G,  # upstream's
        D,  # a DiffusionDiscriminator (upstream does not wrap it in DDP)
        augment_pipe=None,  # upstream's
        upstream_class: str = "training.loss.StyleGAN2Loss",  # what upstream's config named
        diffusion: dict | None = None,  # batch_size, rounds (accumulation rounds per step), controller kwargs, progress
        **upstream_kwargs,  # everything else upstream gives its loss (r1_gamma, blur_init_sigma, ...)
    ):
        inner = construct(upstream_class, device=device, G=G, D=NoisedD(D), augment_pipe=augment_pipe,
                          **upstream_kwargs)
        super().__init__(inner, D.noise, dict(diffusion or {}), images_seen=D.images_seen)
        self._run_D, self.inner.run_D = self.inner.run_D, self.run_D

    def run_D(self, img, c, blur_sigma=0, update_emas=False):
        logits = self._run_D(img, c, blur_sigma=blur_sigma, update_emas=update_emas)
        self.observe_if_real(img, logits)
        return logits

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):
        with self.reals(real_img):
            self.inner.accumulate_gradients(phase=phase, real_img=real_img, real_c=real_c, gen_z=gen_z, gen_c=gen_c,
                                            gain=gain, cur_nimg=cur_nimg)
        self.round_done(phase)  # no sync from upstream: the kit counts the rounds


def configure(c, options: StyleGAN3Options) -> None:
    """Point upstream's config ``c`` (built by its ``main``) at our classes."""
    c.D_kwargs = swap_class(c.D_kwargs, f"{__name__}.DiffusionDiscriminator", **options.discriminator_settings())
    c.loss_kwargs = swap_class(c.loss_kwargs, f"{__name__}.DiffusionStyleGAN3Loss",
                               diffusion=dict(batch_size=c.batch_size,
                                              rounds=c.batch_size // (c.batch_gpu * c.num_gpus),
                                              controller=options.controller_kwargs()))


def entry_patches(modules: dict, options: StyleGAN3Options) -> list:
    """Configure the ``c`` upstream launches; on ``--resume`` of our snapshot, go on where its run stopped."""
    def resume(c, fresh):
        with modules["dnnlib.util"].open_url(c.resume_pkl) as f:
            snapshot = modules["legacy"].load_network_pkl(f)
        default_tick = inspect.signature(modules["training.training_loop"].training_loop).parameters["kimg_per_tick"]
        continue_run(c, fresh, snapshot, default_tick.default, loss_keys=("blur_init_sigma",))

    return launch_training_patch(modules["train"], lambda c: configure(c, options), f"diffusion-{options.preset}",
                                 resume if options.resume_progress else None)


def compat_patches() -> list:
    """Opt-in shims for stylegan3 c233a91 on torch >= 2.2, current setuptools and machines without CUDA.

    - ``pkg_resources`` (gone from setuptools) for its gradfix ops: :func:`~.shims.pkg_resources_patch`,
      applied before upstream is imported;
    - ``torch_utils.misc.InfiniteSampler`` calls ``Sampler.__init__(dataset)`` (rejected by torch >= 2.2);
    - ``train.py``'s Adam ``betas=[0, 0.99]`` mixes an int and a float, which torch >= 2 rejects: with
      ``--cfg stylegan3-t/-r`` G has no lazy regularisation to turn them into floats, so G's optimiser
      fails to build (:func:`~.shims.float_adam_betas_patch`);
    - ``training.training_loop`` hard-codes CUDA (device, events, memory statistics, ``pin_memory``):
      on a machine without CUDA these become the CPU and no-ops;
    - ``train.py`` syncs ``training_stats`` on CUDA whenever there are several ranks: on the CPU over the
      CPU (:func:`~.shims.cpu_stats_sync_patch`; two gloo ranks under torchrun);
    - ``torch_utils/custom_ops.py:get_plugin`` builds the CUDA ops, then fails to import them on current
      torch (:func:`~.shims.registered_extension_patch`): ``bias_act``, ``upfirdn2d`` and ``filtered_lrelu``
      load; where a build really fails, one try, one warning, then the reference op
      (:func:`~.shims.custom_op_fallback_patch`).
    (Its ``conv2d_gradfix`` and ``grid_sample_gradfix`` check the torch version themselves.)
    """
    from torch_utils import training_stats
    from torch_utils.ops import bias_act, filtered_lrelu, upfirdn2d
    from training import training_loop

    return (sampler_signature_patch() + cpu_patches(training_loop) + cpu_stats_sync_patch(training_stats)
            + float_adam_betas_patch(training_loop)
            + registered_extension_patch() + custom_op_fallback_patch([bias_act, upfirdn2d, filtered_lrelu]))


ADAPTER = Adapter(
    name="stylegan3",
    title="Diffusion-StyleGAN3",
    upstream=STYLEGAN3,
    options_class=StyleGAN3Options,
    entry_patches=entry_patches,
    compat_patches=lambda options: compat_patches,
    description="D sees D(noise(augment(blur(x))), c, t) in every phase (--cfg stylegan3-t, stylegan3-r or "
                "stylegan2), t entering through D's label input (a conditional run keeps its labels and adds t); the "
                "controller adapts T identically on every GPU and D's buffers stay rank-identical, as upstream's "
                "snapshot check demands. Upstream's train.py needs --cfg, --batch and --gamma.",
    example="--repo ~/stylegan3 --data afhq_cat --outdir runs --gpus 8 -- --cfg stylegan3-t --batch 32 --gamma 8.2 "
            "--mirror 1",
    cpu_note="-- --cfg stylegan2 --batch 4 --gamma 1 --kimg 1 --cbase 1024 --cmax 32 --map-depth 2 --metrics none",
)

__all__ = ["ADAPTER", "STYLEGAN3", "DiffusionDiscriminator", "DiffusionStyleGAN3Loss", "NoisedD", "StyleGAN3Options",
           "compat_patches", "configure", "entry_patches"]
