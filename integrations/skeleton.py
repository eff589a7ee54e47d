"""The NVlabs StyleGAN skeleton, shared by stylegan2-ada, InsGen, StyleGAN3, R3GAN and ProjectedGAN.

These upstreams share one layout: ``train.py`` builds training options that name classes
(``D_kwargs`` and ``loss_kwargs``, each with a ``class_name``), ``training/training_loop.py`` builds
them (``dnnlib.util.construct_class_by_name``) and trains, ``torch_utils`` holds ``training_stats``,
``misc.InfiniteSampler`` and the CUDA ops, ``legacy.load_network_pkl`` reads snapshots.
:class:`StyleGANAdapter` owns what they do alike:

- the entry patch: ``entry = "setup_training_loop_kwargs"`` (stylegan2-ada's ``train.py``, which returns
  ``(desc, args)``) or ``"launch_training"`` (StyleGAN3's, whose ``main`` builds ``c`` and hands it to
  ``launch_training(c, desc, outdir, dry_run)``); either way :meth:`~StyleGANAdapter.configure` points the
  options at the adapter's ``discriminator`` and ``loss`` classes (upstream's travel as ``upstream_class``)
  and the run folder is named ``...-diffusion-PRESET``;
- resume (``resume = "snapshot progress"``): on ``--resume`` of a snapshot the adapter wrote, the same
  command's options without ``--resume`` are built with upstream's own code (stylegan2-ada: its setup
  function again; StyleGAN3: its ``main`` as a dry run, the only way to learn what its resume switched
  off, whatever its options), then :func:`~.progress.continue_run`; every rank gets the resumable loop and
  the run record;
- the shim chain (:meth:`~StyleGANAdapter.compat_patches`) and the rounds of a step
  (``batch // (batch_gpu * num_gpus)``), torchrun (:mod:`.launch`).

:class:`StyleGANLoss` builds upstream's loss from its options inside ours and reports to upstream's
``training_stats``; :class:`ObservedRunDLoss` keeps upstream's ``run_D`` and observes the logits of the reals.
"""
from __future__ import annotations

import importlib
import inspect

import torch
from torch import nn

from .adapter import CONTRACT, Adapter
from .adapter_settings import DiffusionSettings
from .kit import LossWrapper, swap_class, unwrap
from .launch import LAUNCHERS, follow_rank_zero, join_group, lost_peer, torchrun_env, torchrun_patches, with_world_size
from .patching import construct
from .preflight import check_resume
from .progress import continue_run, resumable_loop_patch
from .run_record import record_run_patch
from .shims import (
    cpu_patches,
    cpu_stats_sync_patch,
    custom_op_fallback_patch,
    registered_extension_patch,
    sampler_signature_patch,
)
from .spec import UpstreamError

ENTRIES = ("setup_training_loop_kwargs", "launch_training")


def class_path(cls: type) -> str:
    """How upstream's options name ``cls``: ``module.Class``."""
    return f"{cls.__module__}.{cls.__qualname__}"


class StyleGANAdapter(Adapter):
    """An adapter of an NVlabs-skeleton upstream (see the module docstring); a subclass states ``entry``, its
    ``discriminator`` and ``loss`` classes and the rest of the contract."""

    entry = "launch_training"  # the train.py function wrapped: one of ENTRIES
    d_phases = ("Dmain", "Dboth")  # the StyleGAN loops' D phases (with and without lazy regularisation)
    resume = "snapshot progress"
    launchers = LAUNCHERS
    ops = ("bias_act", "upfirdn2d")  # torch_utils.ops modules whose CUDA builds load, or fall back once
    batch_gpu_key = "batch_gpu"  # the option holding the per-GPU batch of a D round
    resume_loss_keys = ()  # loss options upstream's resume switches off that a resumed run takes back
    discriminator: type = None  # our D class (upstream's own built inside)
    loss: type = None  # our loss class (upstream's own built inside)
    contract = {**CONTRACT, "discriminator": "our D class, which upstream's options name (upstream's inside it)",
                "loss": "our loss class, which upstream's options name (upstream's inside it; a StyleGANLoss)"}

    @classmethod
    def declaration_error(cls) -> str | None:
        if cls.entry not in ENTRIES:
            return f"entry {cls.entry!r} is none of {', '.join(ENTRIES)}"
        if not (isinstance(cls.discriminator, type) and issubclass(cls.discriminator, nn.Module)):
            return f"discriminator must be an nn.Module subclass; got {cls.discriminator!r}"
        if not (isinstance(cls.loss, type) and issubclass(cls.loss, StyleGANLoss)):
            return f"loss must be a StyleGANLoss subclass; got {cls.loss!r}"
        return None

    def prepare(self, c, settings: DiffusionSettings) -> None:
        """Upstream's settings before the classes are swapped: an adapter's own changes (none here)."""

    def discriminator_settings(self, settings: DiffusionSettings) -> dict:
        """What our D gets besides upstream's D arguments (the kit's label D: ``TimestepLabelSettings``')."""
        return settings.discriminator_settings()

    def rounds(self, c) -> int:
        """Accumulation rounds of one step, the same on every rank."""
        return c.batch_size // (c[self.batch_gpu_key] * c.num_gpus)

    def configure(self, c, settings: DiffusionSettings) -> None:
        """Point upstream's settings ``c`` at our D and loss; the loss's settings travel as ``diffusion``."""
        self.prepare(c, settings)
        c.D_kwargs = swap_class(c.D_kwargs, class_path(self.discriminator), **self.discriminator_settings(settings))
        c.loss_kwargs = swap_class(c.loss_kwargs, class_path(self.loss),
                                   diffusion=self.loss_settings(settings, c.batch_size, self.rounds(c)))

    def run_suffix(self, settings: DiffusionSettings) -> str:
        """What the run folder's name gets after upstream's."""
        return f"diffusion-{settings.preset}"

    def entry_patches(self, modules: dict, settings: DiffusionSettings) -> list:
        """Wrap upstream's ``entry`` so that its settings name our classes; on ``--resume`` of our snapshot, go on
        where its run stopped (``resume_progress``)."""
        def configure(c):
            self.configure(c, settings)

        def resume(c, fresh):
            self.continue_snapshot(modules, c, fresh)

        goes_on = self.resume == "snapshot progress" and settings.resume_progress
        wrap = _setup_patch if self.entry == "setup_training_loop_kwargs" else launch_training_patch
        return wrap(modules["train"], configure, self.run_suffix(settings), resume if goes_on else None)

    def continue_snapshot(self, modules: dict, c, fresh) -> None:
        """Read the ``--resume`` snapshot and set up ``c`` to go on where its run stopped."""
        with modules["dnnlib.util"].open_url(c.resume_pkl) as f:
            snapshot = modules["legacy"].load_network_pkl(f)
        loop = modules[self.upstream.loop_module].training_loop
        default_tick = inspect.signature(loop).parameters["kimg_per_tick"].default
        continue_run(c, fresh, snapshot, default_tick, loss_keys=self.resume_loss_keys)

    def compat_patches(self, settings: DiffusionSettings) -> list:
        """The shims every NVlabs-skeleton upstream needs on current torch and machines without CUDA, then
        :meth:`shims`.

        - ``torch_utils.misc.InfiniteSampler`` calls ``Sampler.__init__(dataset)``, which torch >= 2.2
          rejects (``object.__init__() takes exactly one argument``): accepted and ignored;
        - ``training.training_loop`` hard-codes CUDA (device, events, memory statistics, ``pin_memory``):
          on a machine without CUDA these become the CPU and no-ops, and ``train.py``'s several-rank
          statistics sync goes over the CPU (:func:`~.shims.cpu_stats_sync_patch`);
        - ``torch_utils/custom_ops.py:get_plugin`` builds the CUDA ops, then fails to import them on
          current torch ("No module named 'bias_act_plugin'"; :func:`~.shims.registered_extension_patch`):
          they load; where a build really fails (no compiler), ``_init`` of each of ``ops`` tries once, warns
          once and upstream's reference op serves the run (:func:`~.shims.custom_op_fallback_patch`).
        """
        loop = importlib.import_module(self.upstream.loop_module)
        stats = importlib.import_module("torch_utils.training_stats")
        ops = [importlib.import_module(f"torch_utils.ops.{op}") for op in self.ops]
        return (sampler_signature_patch() + cpu_patches(loop) + cpu_stats_sync_patch(stats)
                + registered_extension_patch() + custom_op_fallback_patch(ops) + self.shims(settings))

    def shims(self, settings: DiffusionSettings) -> list:
        """This upstream's own shims, after the shared ones (each naming the bug it fixes; none here)."""
        return []

    def process_patches(self, modules: dict, repo: str) -> list:
        """The tick line, a loop that can resume its progress (upstream's restarts kimg, tick and iteration) and
        the run record (which checkout wrote the snapshots)."""
        loop = modules[self.upstream.loop_module]
        resumable = resumable_loop_patch(loop) if self.resume == "snapshot progress" else []
        return super().process_patches(modules, repo) + resumable + record_run_patch(self.upstream.name, repo, loop)

    def launch_patches(self, modules: dict, per_process, launcher: str) -> list:
        if launcher == "torchrun":  # the processes exist already: upstream's spawn is replaced
            return torchrun_patches([modules["train"], modules[self.upstream.loop_module]])
        return super().launch_patches(modules, per_process, launcher)

    def preflight(self, upstream_args: list, shims: bool, trust_pickle: bool, launcher: str) -> list:
        """As :class:`Adapter`'s; under torchrun ``--gpus`` becomes the world size and this process joins it."""
        if launcher != "torchrun":
            return super().preflight(upstream_args, shims, trust_pickle, launcher)
        check_resume(upstream_args, trust_pickle)
        upstream_args = with_world_size(upstream_args, torchrun_env()["WORLD_SIZE"])
        join_group()
        return upstream_args

    def start(self, train, upstream_args: list, launcher: str) -> None:
        """Rank 0 runs upstream's ``main``, the other torchrun ranks follow it; a rank whose peer failed stops with
        one :class:`~.spec.UpstreamError` line (the peer's own error says why)."""
        if launcher != "torchrun":
            return super().start(train, upstream_args, launcher)
        try:
            if torch.distributed.get_rank() > 0:
                follow_rank_zero(train)
            else:
                super().start(train, upstream_args, launcher)
            torch.distributed.barrier()  # no rank tears the group down while a peer still talks to it
            torch.distributed.destroy_process_group()  # left to interpreter exit, gloo may abort (SIGABRT)
        except RuntimeError as err:
            if not lost_peer(err):
                raise
            rank = torch.distributed.get_rank()
            torch.distributed.destroy_process_group()  # left to interpreter exit, gloo aborts (SIGABRT)
            raise UpstreamError(f"rank {rank}: stopped because another rank of the job stopped first (its error "
                                "is above)") from None


def _setup_patch(train, configure, desc_suffix: str, resume=None) -> list:
    """Wrap ``train.setup_training_loop_kwargs(**kwargs) -> (desc, args)`` (stylegan2-ada's train.py, InsGen's)."""
    original = train.setup_training_loop_kwargs

    def setup_training_loop_kwargs(**kwargs):
        desc, args = original(**kwargs)
        configure(args)
        if resume is not None and args.get("resume_pkl") is not None:
            fresh = original(**{**kwargs, "resume": None})[1]  # the same command without --resume
            configure(fresh)
            resume(args, fresh)
        return f"{desc}-{desc_suffix}", args

    return [(train, "setup_training_loop_kwargs", setup_training_loop_kwargs)]


def launch_training_patch(train, configure, desc_suffix: str, resume=None) -> list:
    """Wrap ``train.launch_training(c, desc, outdir, dry_run)`` (StyleGAN3's skeleton: ProjectedGAN, R3GAN).

    Upstream's ``main`` builds the config ``c`` and hands it over; ``configure(c)`` points it at our
    classes first. With ``resume(c, fresh)`` and a ``--resume`` in ``c``, ``fresh`` is the config the
    same command gives without ``--resume``, built by upstream's own ``main`` as a dry run, configured alike.
    """
    original = train.launch_training
    captured = []  # a dry run's config lands here instead of launching

    def launch_training(c, desc, outdir, dry_run):
        if captured == [None]:
            captured[0] = c
            return None
        configure(c)
        if resume is not None and c.get("resume_pkl") is not None:
            resume(c, _without_resume(train, captured, configure))
        return original(c=c, desc=f"{desc}-{desc_suffix}", outdir=outdir, dry_run=dry_run)

    return [(train, "launch_training", launch_training)]


def _without_resume(train, captured: list, configure):
    import click

    params = dict(click.get_current_context().params, resume=None, dry_run=True)
    captured[:] = [None]
    try:
        train.main.callback(**params)
        fresh = captured[0]
    finally:
        captured.clear()
    configure(fresh)
    return fresh


class StyleGANLoss(LossWrapper):
    """Upstream's loss, built inside ours from what upstream's options gave (``upstream_class`` and its own
    arguments, D among them: ours, DDP-wrapped or not), reporting to upstream's ``training_stats``.

    ``diffusion``: the JSON form of the loss's :class:`~.kit.LossSettings` (the adapter's ``loss_settings``).
    """

    def __init__(self, upstream_class: str, diffusion: dict | None = None, **upstream_kwargs):
        from torch_utils import training_stats  # upstream's, importable while it runs

        self.D = upstream_kwargs["D"]
        D = unwrap(self.D)
        inner = construct(upstream_class, **self.upstream_arguments(upstream_kwargs))
        super().__init__(inner, D.noise, dict(diffusion or {}), images_seen=getattr(D, "images_seen", None),
                         stats=training_stats)

    def upstream_arguments(self, upstream_kwargs: dict) -> dict:
        """The arguments upstream's loss is built with (an adapter may hand it another D)."""
        return upstream_kwargs


class ObservedRunDLoss(StyleGANLoss):
    """A :class:`StyleGANLoss` whose ``run_D`` stays upstream's; the logits it returns for the reals go to the
    controller."""

    def __init__(self, upstream_class: str, diffusion: dict | None = None, **upstream_kwargs):
        super().__init__(upstream_class, diffusion, **upstream_kwargs)
        self._run_D, self.inner.run_D = self.inner.run_D, self.run_D

    def run_D(self, img, c, **kwargs):
        logits = self._run_D(img, c, **kwargs)
        self.observe_if_real(img, logits)
        return logits


__all__ = ["ENTRIES", "ObservedRunDLoss", "StyleGANAdapter", "StyleGANLoss", "class_path", "launch_training_patch"]
