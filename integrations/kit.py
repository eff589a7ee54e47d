"""What every adapter shares: the loss wrapper's diffusion duties, the class swap, a t-conditioned label D.

An adapter's own module writes only what its upstream does differently; from here it takes:

- :class:`LossWrapper`: the base of an adapter's loss object. Upstream's loss is ``inner``
  (what is not overridden is its); the :class:`~diffaug_noise.AdaptiveController` observes the
  real logits (:meth:`~LossWrapper.observe_if_real`) and is updated once per training step, after
  the last accumulation round of a D phase (:meth:`~LossWrapper.round_done`: upstream's ``sync``
  flag, or rounds counted where upstream has none); then ``Diffusion/p``, ``Diffusion/T``,
  ``Diffusion/r_d`` (from the first adjustment on) and ``Diffusion/pinned`` (+1 while ``T`` sits at
  ``t_max``, -1 while stuck at ``t_min``: the drift guard) go to upstream's ``training_stats`` and
  the tick line shows them. Its ``accumulate_gradients`` serves every upstream whose call differs
  only in the keywords it passes on: a subclass declares them (``keywords``). The controller
  all-reduces its statistics, so every rank moves ``p`` identically; it keeps its per-rank
  accumulators to itself, never in D's buffers (StyleGAN3's ``check_ddp_consistency`` asserts
  every D buffer equal on all ranks).
- :func:`swap_class`: point upstream's ``class_name`` options at our class, upstream's travelling
  along as ``upstream_class`` (so ``training_options.json`` documents the run and spawned ranks
  build the same objects).
- :class:`DiffusionDiscriminator`: upstream's D taking ``t`` through its class-label input
  (``c' = [c, e(t)]``), the noise as a submodule (``p``, ``T`` and the tables are D's buffers:
  saved in every snapshot, restored by upstream's resume) and the count of images trained on (a
  buffer, so a snapshot says where its run was).
- :class:`TimestepLabelSettings`: the knobs of that D (``t_label``, ``t_dim``) and ``resume_progress``.

Example (an upstream loss whose loop passes ``sync``):
    >>> import torch
    >>> from diffaug_noise import DiffusionNoise
    >>> class Upstream:
    ...     def accumulate_gradients(self, phase, real_img, sync):
    ...         pass
    >>> class Loss(LossWrapper):
    ...     keywords = ("sync",)
    >>> settings = LossSettings(batch_size=4, d_phases=("Dmain",), controller=dict(interval=1, kimg=1))
    >>> loss = Loss(Upstream(), DiffusionNoise(), settings.as_json(), stats=None)
    >>> loss.controller.observe(torch.ones(4))  # what run_D does with the logits of the reals: all sure, r_d = 1
    >>> loss.accumulate_gradients(phase="Dmain", real_img=torch.zeros(4, 3, 8, 8), sync=True)
    >>> loss.controller.step, loss.noise.p
    (1, 0.004)
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math

import torch
from torch import nn

from diffaug_noise.conditioning import CONDITIONINGS
from diffaug_noise.controller import AdaptiveController
from diffaug_noise.noise import DiffusionNoise

from .adapter_settings import DiffusionSettings, knob
from .patching import broadcast_noise_state, construct, progress_line, show_on_tick_line
from .spec import UpstreamError

T_LABELS = ("embedding", "raw")  # names of CONDITIONINGS that encode t for a label input


def swap_class(kwargs, our_class: str, **settings):
    """``kwargs`` (upstream's options naming a class) naming ``our_class`` instead, upstream's as ``upstream_class``.

    Example:
        >>> swap_class({"class_name": "training.loss.Loss", "r1_gamma": 1}, "ours.Loss", batch_size=4)
        {'class_name': 'ours.Loss', 'upstream_class': 'training.loss.Loss', 'batch_size': 4, 'r1_gamma': 1}
    """
    rest = dict(kwargs)
    upstream = rest.pop("class_name")
    # upstream's EasyDict stays one
    return type(kwargs)(class_name=our_class, upstream_class=upstream, **settings, **rest)


def unwrap(module):
    """The module inside a DistributedDataParallel wrapper, or the module itself."""
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


@dataclasses.dataclass(frozen=True)
class LossSettings:
    """What a :class:`LossWrapper` needs besides upstream's own arguments.

    They travel in upstream's training options, which upstream writes to ``training_options.json`` with
    ``json.dump``: the adapter writes :meth:`as_json` there, and the loss reads it back with :meth:`from_json`, which
    refuses a key it does not know. An adapter whose loss needs more subclasses this (``StyleGAN2LossSettings``) and
    names it as its loss's ``settings_class``.

    Example:
        >>> LossSettings.from_json({"batch_size": 8, "d_phases": ["Dmain"], "rounds": 2}).d_phases
        ('Dmain',)
    """

    batch_size: int  # global, over all ranks
    d_phases: tuple = ()  # upstream's D phases: the controller steps after the last round of one
    controller: dict = dataclasses.field(default_factory=dict)  # AdaptiveController's arguments, signal among them
    rounds: int | None = None  # accumulation rounds per step; needed where upstream passes no sync
    progress: dict | None = None  # where a resumed run starts: cur_nimg, batch_idx (integrations/progress.py)

    def __post_init__(self):
        object.__setattr__(self, "d_phases", tuple(self.d_phases))
        if not self.d_phases:
            raise ValueError("loss settings need d_phases, the names of upstream's D phases (the adapter's "
                             "d_phases), or the controller never steps")
        if self.rounds is not None and (isinstance(self.rounds, bool) or not isinstance(self.rounds, int)
                                        or self.rounds < 1):
            raise ValueError(f"rounds must be an int >= 1 (accumulation rounds per step); got {self.rounds!r}")

    @classmethod
    def from_json(cls, values: dict) -> "LossSettings":
        """The settings an adapter wrote with :meth:`as_json`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown loss setting(s) {unknown}; known: {', '.join(sorted(known))}")
        return cls(**values)

    def as_json(self) -> dict:
        """Plain values for upstream's training options (``d_phases`` a list)."""
        return {**dataclasses.asdict(self), "d_phases": list(self.d_phases)}


class LossWrapper:
    """Base of the adapters' loss objects: upstream's loss inside, the controller's duties around it.

    ``inner`` is upstream's loss object; ``noise`` the D's :class:`~diffaug_noise.DiffusionNoise`.
    ``settings``: the JSON form of a :class:`LossSettings` (of ``settings_class``), as it comes from
    upstream's training options. ``stats``, always stated: upstream's ``training_stats`` module (anything with
    ``report(name, value)``) to report to, or None to report nowhere (an upstream without one).

    ``keywords`` (class attribute): what upstream's loop passes ``accumulate_gradients`` besides
    ``phase`` and ``real_img``. With it, this class's ``accumulate_gradients`` serves as it is:
    upstream's round with the reals marked, :meth:`round_ran`, then :meth:`round_done` with
    upstream's ``sync`` when ``sync`` is among them, else with the rounds counted. Checked when the
    loss is built: upstream's loss must take them, and ``rounds`` must be given where ``sync`` is not
    among them. Further keywords upstream's loop adds (InsGen's contrastive options) pass on too. A
    loss whose loop calls otherwise writes its own ``accumulate_gradients`` (``keywords = None``).
    """

    inner = None
    _real = None
    keywords: tuple | None = None
    settings_class: type = LossSettings

    def __init__(self, inner, noise: DiffusionNoise, settings: dict, images_seen: torch.Tensor | None = None, *,
                 stats):
        name = type(self).__name__
        if self.keywords is None and type(self).accumulate_gradients is LossWrapper.accumulate_gradients:
            raise TypeError(f"{name} declares no keywords (what upstream's loop passes accumulate_gradients besides "
                            "phase and real_img) and writes no accumulate_gradients of its own")
        try:
            self.settings = self.settings_class.from_json(settings)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name}: {err}") from None
        self._rounds, self._d_rounds = self.settings.rounds, 0
        if self.keywords is not None:
            self._check_keywords(inner)
        self.inner, self.noise, self.d_phases = inner, noise, self.settings.d_phases
        broadcast_noise_state(noise)  # every rank starts from rank 0's p and T (what --resume restored there)
        self.controller = AdaptiveController(noise, batch_size=self.settings.batch_size, **self.settings.controller)
        progress = self.settings.progress or {}
        self.images_seen = images_seen
        if images_seen is not None:
            images_seen.fill_(progress.get("cur_nimg", 0))
        self.controller.step = progress.get("batch_idx", 0)  # keeps its adjustments in step with upstream's own
        self._nimg = progress.get("cur_nimg", 0)  # on the host: the progress line must not read D's buffer
        self._rank0 = not (torch.distributed.is_available() and torch.distributed.is_initialized()
                           and torch.distributed.get_rank() > 0)
        self._stats = stats
        show_on_tick_line(self.controller)

    def _check_keywords(self, inner) -> None:
        """Upstream's loss takes ``keywords``, and rounds are given where ``sync`` is not among them."""
        try:
            inspect.signature(inner.accumulate_gradients).bind(phase=None, real_img=None,
                                                               **dict.fromkeys(self.keywords))
        except TypeError as err:
            raise UpstreamError(f"{type(inner).__name__}.accumulate_gradients does not take what "
                                f"{type(self).__name__} passes on ({err}): a checkout the adapter was not tested "
                                "on?") from None
        if "sync" not in self.keywords and self._rounds is None:
            raise ValueError(f"{type(self).__name__}: upstream's loop passes no sync, so settings need rounds "
                             "(accumulation rounds per step: batch // (batch_gpu * num_gpus))")

    def __getattr__(self, name):  # pl_mean, run_G, run_cl, G, ...: the upstream loss's
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def accumulate_gradients(self, phase, real_img, **kwargs):
        """Upstream's round of ``phase`` with ``real_img`` marked as the reals; then :meth:`round_ran` and
        :meth:`round_done`."""
        with self.reals(real_img):
            self.inner.accumulate_gradients(phase=phase, real_img=real_img, **kwargs)
        self.round_ran(phase)
        self.round_done(phase, kwargs.get("sync") if "sync" in self.keywords else None)

    def round_ran(self, phase: str) -> None:
        """Called after each of upstream's rounds, before :meth:`round_done`: a loss that collects D's logits itself
        hands them to the controller here (R3GAN's pairs)."""

    @contextlib.contextmanager
    def reals(self, real_img: torch.Tensor):
        """While upstream's loss runs: ``real_img`` is the batch of reals (:meth:`is_real` recognises it)."""
        self._real = real_img
        try:
            yield
        finally:
            self._real = None

    def is_real(self, img: torch.Tensor) -> bool:
        """Whether ``img`` is the reals (upstream passes them on as ``real_img.detach()``: the same storage)."""
        return self._real is not None and img.data_ptr() == self._real.data_ptr() and img.shape == self._real.shape

    def observe_if_real(self, img: torch.Tensor, logits: torch.Tensor) -> None:
        """Give the controller D's ``logits`` of ``img`` when ``img`` is the reals."""
        if self.is_real(img):
            self.controller.observe(logits)

    def round_done(self, phase: str, sync: bool | None = None) -> None:
        """One accumulation round of ``phase`` ran; after a D step's last one, the controller's step.

        ``sync`` is upstream's "last round" flag; ``None`` where upstream has none, and the rounds
        are counted instead (``settings.rounds`` per step, the same count on every rank).
        """
        if phase not in self.d_phases:
            return
        if sync is None:
            if self._rounds is None:
                raise ValueError(f"{type(self).__name__}.round_done({phase!r}) without sync needs settings.rounds "
                                 "(accumulation rounds per step)")
            self._d_rounds += 1
            sync = self._d_rounds % self._rounds == 0
        if sync:
            self.controller.update()
            self._nimg += self.controller.batch_size
            if self.images_seen is not None:
                self.images_seen.add_(self.controller.batch_size)
            if self._rank0:
                progress_line(self.controller, self._nimg)
            if self._stats is not None:
                self._report(self._stats)

    def _report(self, stats) -> None:
        """``Diffusion/p``, ``T``, ``r_d`` and ``pinned`` to upstream's ``training_stats``.

        ``r_d`` is NaN until the controller's first adjustment; training_stats keeps running sums, so
        one NaN would make that statistic's mean NaN in every later tick of ``stats.jsonl``: it is
        reported empty (upstream's way of saying "nothing this time") until it is a number.
        """
        stats.report("Diffusion/p", float(self.noise.p))
        stats.report("Diffusion/T", float(self.noise.T))
        r_d = float(self.controller.r_d)
        stats.report("Diffusion/r_d", [r_d] if math.isfinite(r_d) else [])
        pinned = self.controller.pinned  # the drift guard's count: at t_max (> 0) or stuck at t_min (< 0)
        stats.report("Diffusion/pinned", float((pinned > 0) - (pinned < 0)))


class DiffusionDiscriminator(nn.Module):
    """Upstream's discriminator taking ``t`` through its label input; holds the diffusion noise.

    ``forward(img, c, t=None, **kwargs)``: ``t = None`` means clean images (``t = 0``), which is
    how upstream's own calls (network summary, InsGen's contrastive branch) reach it.
    """

    def __init__(
        self,
        c_dim: int,  # upstream's class-label width (0: unconditional)
        upstream_class: str,  # what upstream's options named
        noise_kwargs: dict | None = None,  # DiffusionNoise settings
        t_label: str = "embedding",  # "embedding" (sinusoids of t) or "raw" (t itself)
        t_dim: int = 32,  # embedding width
        **upstream_kwargs,  # everything else upstream's options give its discriminator
    ):
        super().__init__()
        self.c_dim = c_dim
        for name in ("img_resolution", "img_channels"):  # read by upstream's loops and metrics
            if name in upstream_kwargs:
                setattr(self, name, upstream_kwargs[name])
        self.noise = DiffusionNoise(**(noise_kwargs or {}))
        self.register_buffer("images_seen", torch.zeros((), dtype=torch.int64))  # counted by the LossWrapper
        encoding = (CONDITIONINGS["embedding"](t_dim, max_period=float(self.noise.t_max) * 2, mlp=False)
                    if t_label == "embedding" else CONDITIONINGS[t_label]())
        self.label = CONDITIONINGS["label"](encoding)
        self.D = construct(upstream_class, c_dim=c_dim + encoding.dim, **upstream_kwargs)

    def forward(self, img, c, t=None, **kwargs):
        if t is None:
            t = torch.zeros(img.shape[0], dtype=torch.int64, device=img.device)
        return self.D(img, self.label(c, t), **kwargs)


@dataclasses.dataclass
class TimestepLabelSettings(DiffusionSettings):
    """The paper's knobs plus how ``t`` reaches a :class:`DiffusionDiscriminator` and whether a resume goes on."""

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

    def discriminator_settings(self) -> dict:
        """The :class:`DiffusionDiscriminator` arguments these settings give."""
        return dict(noise_kwargs=self.noise_kwargs(), t_label=self.label_mode(), t_dim=self.t_dim)


TimestepLabelOptions = TimestepLabelSettings  # the earlier name (CHANGELOG), for adapters written against it

__all__ = ["DiffusionDiscriminator", "LossSettings", "LossWrapper", "TimestepLabelOptions", "TimestepLabelSettings",
           "swap_class", "unwrap"]
