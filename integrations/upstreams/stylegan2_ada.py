"""Diffusion StyleGAN2 on an unmodified NVlabs/stylegan2-ada-pytorch checkout, patched at run time.

Upstream builds its discriminator and loss from class names in its training options
(``dnnlib.util.construct_class_by_name``). We wrap ``train.setup_training_loop_kwargs`` so those
names point at two classes here, each of which builds upstream's own class inside:

- :class:`~.kit.DiffusionDiscriminator` (the kit's): upstream's ``Discriminator`` with its label
  input widened by an encoding of ``t`` (``c' = [c, e(t)]``, through upstream's own label mapping
  network), and the :class:`~diffaug_noise.DiffusionNoise` as a submodule, so ``p``, ``T`` and the
  tables are buffers of ``D``: saved in every snapshot, restored by upstream's ``--resume`` and
  copied to all ranks when upstream wraps ``D`` in DDP (we also broadcast them from rank 0 explicitly).
- :class:`DiffusionLoss`: upstream's loss object with its ``run_D`` replaced, so both the D and
  the G phases see ``D(noise(augment(x)), c, t)``; R1 stays upstream's (taken w.r.t. the clean
  reals, through the noise). It observes the logits of the reals and runs the
  :class:`~diffaug_noise.AdaptiveController` once per iteration (after the last round of the D
  phase); the controller all-reduces its statistics, so every rank adjusts ``p`` identically.

Resume (``resume_progress``, on by default): D also counts the images trained on (a buffer, so
snapshots carry it). From a snapshot with a count, ``--resume`` goes on where the run stopped:
the loop's kimg, tick and iteration index (:mod:`.progress`), upstream's ADA ``p``, the EMA
ramp-up and the controller's step, identically on every rank (they travel in the training
options). A snapshot without one (a pretrained network) is weights only, as upstream resumes.

Augmentation before the noise (``aug``): ``"ada"`` keeps upstream's ADA pipeline and its own
adaptive ``p`` (as the official fork allows), ``"diffaug"`` applies
:class:`~diffaug_noise.augment.DiffAugment`, ``"none"`` neither.

Tested against upstream commit d72cc7d041b42ec8e806021a205ed9349f87c6a4 (2023-09-22).
"""
from __future__ import annotations

import dataclasses
import inspect

from diffaug_noise.conditioning import RawTimestep  # noqa: F401  (snapshots of earlier versions name it here)

from . import kit
from .adapter import Adapter
from .kit import DiffusionDiscriminator, TimestepLabelOptions, swap_class, unwrap
from .options import knob
from .patching import construct
from .progress import continue_run
from .shims import (
    cpu_patches,
    cpu_stats_sync_patch,
    custom_op_fallback_patch,
    grid_sample_patch,
    registered_extension_patch,
    sampler_signature_patch,
)
from .spec import Upstream

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
    loop_restarts_progress=True,
)

AUGS = ("ada", "diffaug", "none")


@dataclasses.dataclass
class StyleGAN2Options(TimestepLabelOptions):
    """The paper's knobs, how ``t`` reaches D (:class:`~.kit.TimestepLabelOptions`), and what augments before the
    noise."""

    preset: str = knob("paper", "Noise and controller settings: the paper's, or an official fork's "
                                "(docs/reference-quirks.md).",
                       kind=str, choices=("paper", "stylegan2", "insgen"))
    aug: str = knob("ada", "Augmentation before the noise: upstream's ADA, DiffAugment or none.", kind=str,
                    choices=AUGS)


class DiffusionLoss(kit.DiffusionLoss):
    """Upstream's loss with ``run_D`` replaced: ``D(noise(augment(img)), c, t)``; drives the controller."""

    def __init__(
        self,
        device,  # upstream's
        D,  # upstream's (DDP-wrapped on several GPUs): a DiffusionDiscriminator inside
        upstream_class: str = "training.loss.StyleGAN2Loss",  # what upstream's options named
        diffusion: dict | None = None,  # batch_size, controller kwargs, aug, progress (where a resumed run starts)
        **upstream_kwargs,  # everything else upstream gives its loss (G_mapping, augment_pipe, r1_gamma, ...)
    ):
        from torch_utils import misc  # upstream's, importable while it runs

        settings = dict(diffusion or {})
        super().__init__(construct(upstream_class, device=device, D=D, **upstream_kwargs), unwrap(D).noise, settings,
                         images_seen=unwrap(D).images_seen)
        self.D = D
        self.diffaugment = None
        if settings.get("aug") == "diffaug":
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

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, sync, gain, **kwargs):
        with self.reals(real_img):
            self.inner.accumulate_gradients(phase=phase, real_img=real_img, real_c=real_c, gen_z=gen_z, gen_c=gen_c,
                                            sync=sync, gain=gain, **kwargs)
        self.round_done(phase, sync)


def configure(args, options: StyleGAN2Options) -> None:
    """Point upstream's training options (``args`` from ``setup_training_loop_kwargs``) at our classes."""
    args.D_kwargs = swap_class(args.D_kwargs, f"{__name__}.DiffusionDiscriminator", **options.discriminator_settings())
    args.loss_kwargs = swap_class(args.loss_kwargs, f"{__name__}.DiffusionLoss",
                                  diffusion=dict(batch_size=args.batch_size, controller=options.controller_kwargs(),
                                                 aug=options.aug))
    if options.aug == "ada":
        args.ada_kimg = 100  # every official fork runs ADA at 100 kimg (upstream's loop default is 500)
    else:
        args.augment_kwargs, args.ada_target, args.augment_p = None, None, 0


def compat_patches() -> list:
    """Opt-in shims for upstream d72cc7d on torch >= 2.2 / numpy 2 and on machines without CUDA.

    - ``torch_utils.misc.InfiniteSampler`` calls ``Sampler.__init__(dataset)``, which torch >= 2.2
      rejects (``object.__init__() takes exactly one argument``): accept and ignore it.
    - ``training.training_loop`` hard-codes ``torch.device('cuda', rank)``, CUDA events, memory
      statistics and ``pin_memory()``: on a machine without CUDA these become the CPU and no-ops, and
      ``train.py``'s several-rank statistics sync goes over the CPU (:func:`~.shims.cpu_stats_sync_patch`).
    - ``torch_utils.ops.grid_sample_gradfix`` disables its custom op on torch != 1.7/1.8 and falls
      back to ``F.grid_sample``, which on CUDA cannot be differentiated twice: R1 through ADA's
      geometric augmentations fails ("derivative for aten::grid_sampler_2d_backward is not
      implemented"). :class:`~.shims.GridSampleTwice` provides the second derivative.
    - ``torch_utils/custom_ops.py:get_plugin`` builds the CUDA ops and then fails to import them
      on current torch (:func:`~.shims.registered_extension_patch`): they load now;
    - ``torch_utils.ops.upfirdn2d._init`` retries a failed build on every call
      (:func:`~.shims.custom_op_fallback_patch`): one try, one warning, then the reference op.
    (``conv2d_gradfix`` falls back to ``F.conv2d``, which is twice differentiable.)
    """
    from torch_utils import training_stats
    from torch_utils.ops import bias_act, grid_sample_gradfix, upfirdn2d
    from training import training_loop

    return (sampler_signature_patch() + cpu_patches(training_loop) + cpu_stats_sync_patch(training_stats)
            + grid_sample_patch(grid_sample_gradfix)
            + registered_extension_patch() + custom_op_fallback_patch([bias_act, upfirdn2d]))


def entry_patches(modules: dict, options: StyleGAN2Options) -> list:
    """Wrap upstream's ``train.setup_training_loop_kwargs`` so its options name our D and loss."""
    train = modules["train"]
    original_setup = train.setup_training_loop_kwargs

    def setup_training_loop_kwargs(**kwargs):
        desc, args = original_setup(**kwargs)
        configure(args, options)
        if options.resume_progress and args.get("resume_pkl") is not None:
            fresh = original_setup(**{**kwargs, "resume": None})[1]  # the same command without --resume
            configure(fresh, options)
            with modules["dnnlib.util"].open_url(args.resume_pkl) as f:
                snapshot = modules["legacy"].load_network_pkl(f)
            loop = modules["training.training_loop"].training_loop
            default_tick = inspect.signature(loop).parameters["kimg_per_tick"]
            continue_run(args, fresh, snapshot, default_tick.default)
        return f"{desc}-diffusion-{options.preset}", args

    return [(train, "setup_training_loop_kwargs", setup_training_loop_kwargs)]


ADAPTER = Adapter(
    name="stylegan2",
    title="Diffusion-StyleGAN2",
    upstream=STYLEGAN2_ADA,
    options_class=StyleGAN2Options,
    entry_patches=entry_patches,
    compat_patches=lambda options: compat_patches,
    description="D sees D(noise(augment(x)), c, t) in both phases, with t entering through D's label input; the "
                "controller adapts T identically on every GPU, and p/T live in D's buffers, so snapshots, --resume, "
                "metrics and generate.py work as upstream's.",
    example="--repo ~/stylegan2-ada-pytorch --data lsun_bedroom --outdir runs --gpus 8 -- --cfg paper256 --mirror 1",
    cpu_note="-- --cfg cifar --fp32 1 --batch 4 --kimg 1 --metrics none: about 4 minutes to tick 0 and 7 s an "
             "iteration on 2 cores, since upstream cannot narrow its networks; `run stylegan3 ... -- --cfg stylegan2 "
             "--cbase 1024 --cmax 32 --map-depth 2` checks the same configuration in about a minute",
)

__all__ = ["ADAPTER", "STYLEGAN2_ADA", "DiffusionDiscriminator", "DiffusionLoss", "StyleGAN2Options", "compat_patches",
           "configure", "entry_patches"]
