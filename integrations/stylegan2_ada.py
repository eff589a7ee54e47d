"""Diffusion StyleGAN2 on an unmodified NVlabs/stylegan2-ada-pytorch checkout, patched at run time.

Upstream builds its discriminator and loss from class names in its training options
(``dnnlib.util.construct_class_by_name``). We wrap ``train.setup_training_loop_kwargs`` so those
names point at two classes here, each of which builds upstream's own class inside:

- :class:`DiffusionDiscriminator`: upstream's ``Discriminator`` with its label input widened by
  an encoding of ``t`` (``c' = [c, e(t)]``, through upstream's own label mapping network), and the
  :class:`~diffaug_noise.DiffusionNoise` as a submodule, so ``p``, ``T`` and the tables are
  buffers of ``D``: saved in every snapshot, restored by upstream's ``--resume`` and copied to all
  ranks when upstream wraps ``D`` in DDP (we also broadcast them from rank 0 explicitly).
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

import torch
from torch import nn

from diffaug_noise.conditioning import TimestepEmbedding, TimestepLabel
from diffaug_noise.controller import AdaptiveController
from diffaug_noise.noise import DiffusionNoise

from .adapter import Adapter
from .options import DiffusionOptions, knob
from .patching import WrappedLoss, broadcast_noise_state, construct, show_on_tick_line
from .progress import progress_at
from .shims import (cpu_patches, custom_op_fallback_patch, grid_sample_patch, registered_extension_patch,
                    sampler_signature_patch)
from .spec import Upstream, UpstreamError

STYLEGAN2_ADA = Upstream(
    name="stylegan2-ada-pytorch",
    clone="git clone https://github.com/NVlabs/stylegan2-ada-pytorch",
    env_var="DIFFAUG_NOISE_STYLEGAN2_REPO",
    tested_commits=("d72cc7d041b42ec8e806021a205ed9349f87c6a4",),
    markers=("train.py", "training/training_loop.py", "training/loss.py", "training/networks.py", "torch_utils/misc.py"),
    names={"train": ["main", "setup_training_loop_kwargs", "subprocess_fn"], "training.training_loop": ["training_loop"],
           "training.loss": ["StyleGAN2Loss"], "training.networks": ["Discriminator"],
           "torch_utils.misc": ["ddp_sync", "InfiniteSampler"], "torch_utils.training_stats": ["report", "report0"],
           "torch_utils.ops.grid_sample_gradfix": ["grid_sample"], "torch_utils.ops.bias_act": ["_init"],
           "torch_utils.ops.upfirdn2d": ["_init"], "legacy": ["load_network_pkl"], "dnnlib.util": ["open_url"]},
    loop_restarts_progress=True,
)

T_LABELS = ("embedding", "raw")
AUGS = ("ada", "diffaug", "none")


@dataclasses.dataclass
class StyleGAN2Options(DiffusionOptions):
    """The paper's knobs (:class:`~.options.DiffusionOptions`) plus how augmentation and ``t`` reach D."""

    preset: str = knob("paper", "Noise and controller settings: the paper's, or an official fork's (docs/reference-quirks.md).",
                       kind=str, choices=("paper", "stylegan2", "insgen"))
    aug: str = knob("ada", "Augmentation before the noise: upstream's ADA, DiffAugment (kornia) or none.", kind=str, choices=AUGS)
    t_label: str | None = knob(None, "How t enters D's label input: sinusoids (embedding) or t itself (raw, as the "
                                     "official fork). [default: embedding for the paper preset, raw for the forks']",
                               kind=str, choices=T_LABELS)
    t_dim: int = knob(32, "Width of the sinusoidal embedding of t.", kind=int, minimum=2)
    resume_progress: bool = knob(True, "With --resume of a snapshot this adapter wrote, go on from its kimg, tick and "
                                       "ADA p as if the run had not stopped; off: start them at zero, as upstream does "
                                       "(to fine-tune).", kind=bool)

    def label_mode(self) -> str:
        """The fork presets feed t raw, as the official code did; ours embeds it."""
        return self.t_label or ("embedding" if self.preset == "paper" else "raw")


class RawTimestep(nn.Module):
    """``t`` as a ``[B, 1]`` float: the official fork's label input (``t_dim = 1``)."""

    dim = 1

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return t.float().view(-1, 1)


class DiffusionDiscriminator(nn.Module):
    """Upstream's discriminator taking ``t`` through its label input; holds the diffusion noise.

    ``forward(img, c, t=None, **kwargs)``: ``t = None`` means clean images (``t = 0``), which is
    how upstream's own calls (network summary, InsGen's contrastive branch) reach it.
    """

    def __init__(
        self,
        c_dim: int,  # upstream's class-label width (0: unconditional)
        img_resolution: int,  # upstream's
        img_channels: int,  # upstream's
        upstream_class: str = "training.networks.Discriminator",  # what upstream's options named
        noise_kwargs: dict | None = None,  # DiffusionNoise settings
        t_label: str = "embedding",  # "embedding" (sinusoids of t) or "raw" (t itself)
        t_dim: int = 32,  # embedding width
        **upstream_kwargs,  # everything else upstream's options give its Discriminator
    ):
        super().__init__()
        self.c_dim, self.img_resolution, self.img_channels = c_dim, img_resolution, img_channels
        self.noise = DiffusionNoise(**(noise_kwargs or {}))
        # Images trained on, counted by DiffusionLoss: a buffer so that every snapshot says where its run was.
        self.register_buffer("images_seen", torch.zeros((), dtype=torch.int64))
        encoding = TimestepEmbedding(t_dim, max_period=float(self.noise.t_max) * 2, mlp=False) if t_label == "embedding" \
            else RawTimestep()
        self.label = TimestepLabel(encoding)
        self.D = construct(upstream_class, c_dim=c_dim + encoding.dim, img_resolution=img_resolution,
                            img_channels=img_channels, **upstream_kwargs)

    def forward(self, img, c, t=None, **kwargs):
        if t is None:
            t = torch.zeros(img.shape[0], dtype=torch.int64, device=img.device)
        return self.D(img, self.label(c, t), **kwargs)


def _unwrap(module):
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


class DiffusionLoss(WrappedLoss):
    """Upstream's loss with ``run_D`` replaced: ``D(noise(augment(img)), c, t)``; drives the controller."""

    def __init__(
        self,
        device,  # upstream's
        D,  # upstream's (DDP-wrapped on several GPUs): a DiffusionDiscriminator inside
        upstream_class: str = "training.loss.StyleGAN2Loss",  # what upstream's options named
        diffusion: dict | None = None,  # batch_size, controller kwargs, aug, progress (where a resumed run starts)
        **upstream_kwargs,  # everything else upstream gives its loss (G_mapping, augment_pipe, r1_gamma, ...)
    ):
        from torch_utils import misc, training_stats  # upstream's, importable while it runs

        settings = dict(diffusion or {})
        self.inner = construct(upstream_class, device=device, D=D, **upstream_kwargs)
        self.D = D
        self.noise = _unwrap(D).noise
        broadcast_noise_state(self.noise)
        self.controller = AdaptiveController(self.noise, batch_size=settings["batch_size"], **settings.get("controller", {}))
        progress = settings.get("progress") or {}
        self.images_seen = _unwrap(D).images_seen
        self.images_seen.fill_(progress.get("cur_nimg", 0))
        self.controller.step = progress.get("batch_idx", 0)  # keeps its adjustments in step with ADA's
        show_on_tick_line(self.controller)
        self.diffaugment = None
        if settings.get("aug") == "diffaug":
            from diffaug_noise.augment import DiffAugment

            self.diffaugment = DiffAugment()
        self.inner.run_D = self.run_D
        self._ddp_sync, self._stats = misc.ddp_sync, training_stats

    def run_D(self, img, c, sync):
        # Upstream passes the reals as real_img.detach() (same storage), fakes straight from G.
        is_real = self.is_real(img)
        if self.inner.augment_pipe is not None:
            img = self.inner.augment_pipe(img)
        if self.diffaugment is not None:
            img = self.diffaugment(img)
        y, t = self.noise(img)
        with self._ddp_sync(self.D, sync):
            logits = self.D(y, c, t)
        if is_real:
            self.controller.observe(logits)
        return logits

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, sync, gain, **kwargs):
        self._real = real_img
        try:
            self.inner.accumulate_gradients(phase=phase, real_img=real_img, real_c=real_c, gen_z=gen_z, gen_c=gen_c,
                                            sync=sync, gain=gain, **kwargs)
        finally:
            self._real = None
        if phase in ("Dmain", "Dboth") and sync:  # the last round of this iteration's D step
            self.controller.update()
            self.images_seen.add_(self.controller.batch_size)
            self._stats.report("Diffusion/p", float(self.noise.p))
            self._stats.report("Diffusion/T", float(self.noise.T))
            self._stats.report("Diffusion/r_d", float(self.controller.r_d))


def configure(args, options: StyleGAN2Options) -> None:
    """Point upstream's training options (``args`` from ``setup_training_loop_kwargs``) at our classes."""
    easy = type(args.D_kwargs)  # upstream's dnnlib.EasyDict: keeps options JSON-able and attribute-accessible
    d_kwargs = dict(args.D_kwargs)
    args.D_kwargs = easy(class_name=f"{__name__}.DiffusionDiscriminator", upstream_class=d_kwargs.pop("class_name"),
                         noise_kwargs=options.noise_kwargs(), t_label=options.label_mode(), t_dim=options.t_dim, **d_kwargs)
    loss_kwargs = dict(args.loss_kwargs)
    args.loss_kwargs = easy(class_name=f"{__name__}.DiffusionLoss", upstream_class=loss_kwargs.pop("class_name"),
                            diffusion=dict(batch_size=args.batch_size, controller=options.controller_kwargs(), aug=options.aug),
                            **loss_kwargs)
    if options.aug == "ada":
        args.ada_kimg = 100  # every official fork runs ADA at 100 kimg (upstream's loop default is 500)
    else:
        args.augment_kwargs, args.ada_target, args.augment_p = None, None, 0


def continue_run(args, fresh_args, legacy, open_url) -> None:
    """Make a ``--resume`` of a snapshot this adapter wrote go on where that run stopped.

    ``args``: upstream's training options for this (resumed) run; ``fresh_args``: the same command's
    options without ``--resume`` (upstream's resume switches off the EMA ramp-up, for fine-tuning).
    Sets the loop's starting kimg, tick and iteration (``resume_progress``), the loss's counters and
    ADA's ``p`` from the snapshot; a snapshot without an image count leaves everything as upstream.
    """
    with open_url(args.resume_pkl) as f:
        snapshot = legacy.load_network_pkl(f)
    nimg = int(getattr(snapshot["D"], "images_seen", 0))
    if nimg == 0:
        print("Resuming weights only: the snapshot has no image count (diffaug-noise did not write it), "
              "so kimg and ADA p start from zero, as upstream resumes.")
        return
    if nimg >= args.total_kimg * 1000:
        raise UpstreamError(f"the --resume snapshot is at kimg {nimg / 1000:g}, not below --kimg {args.total_kimg:g}; raise "
                            "--kimg to continue the run, or pass --no-resume-progress to train from it anew")
    from training import training_loop

    kimg_per_tick = args.get("kimg_per_tick", inspect.signature(training_loop.training_loop).parameters["kimg_per_tick"].default)
    progress = progress_at(nimg, args.batch_size, kimg_per_tick)
    args.resume_progress = progress
    args.loss_kwargs.diffusion["progress"] = progress
    args.ema_rampup = fresh_args.ema_rampup
    augment = snapshot.get("augment_pipe")
    if args.ada_target is not None and augment is not None:
        args.augment_p = float(augment.p)
    print(f"Continuing the snapshot's run at kimg {nimg / 1000:g}, tick {progress['cur_tick']}, ADA p "
          f"{args.get('augment_p', 0):.5f} (--no-resume-progress starts from zero).")


def compat_patches() -> list:
    """Opt-in shims for upstream d72cc7d on torch >= 2.2 / numpy 2 and on machines without CUDA.

    - ``torch_utils.misc.InfiniteSampler`` calls ``Sampler.__init__(dataset)``, which torch >= 2.2
      rejects (``object.__init__() takes exactly one argument``): accept and ignore it.
    - ``training.training_loop`` hard-codes ``torch.device('cuda', rank)``, CUDA events, memory
      statistics and ``pin_memory()``: on a machine without CUDA these become the CPU and no-ops.
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
    from torch_utils.ops import bias_act, grid_sample_gradfix, upfirdn2d
    from training import training_loop

    return (sampler_signature_patch() + cpu_patches(training_loop) + grid_sample_patch(grid_sample_gradfix)
            + registered_extension_patch() + custom_op_fallback_patch([bias_act, upfirdn2d]))


def entry_patches(modules: dict, options: StyleGAN2Options) -> list:
    """Wrap upstream's ``train.setup_training_loop_kwargs`` so its options name our D and loss."""
    train = modules["train"]
    original_setup = train.setup_training_loop_kwargs

    def setup_training_loop_kwargs(**kwargs):
        desc, args = original_setup(**kwargs)
        configure(args, options)
        if options.resume_progress and args.get("resume_pkl") is not None:
            continue_run(args, original_setup(**{**kwargs, "resume": None})[1], modules["legacy"],
                         modules["dnnlib.util"].open_url)
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
    cpu_note="-- --cfg cifar --fp32 1 --batch 4 --kimg 1",
)

__all__ = ["ADAPTER", "STYLEGAN2_ADA", "DiffusionDiscriminator", "DiffusionLoss", "RawTimestep", "StyleGAN2Options",
           "compat_patches", "configure", "continue_run", "entry_patches"]
