"""One object that makes any discriminator diffusion-aware: noise, controller and ``t``, called where D was.

:class:`DiffusionAwareDiscriminator` wraps an unmodified D. Each call noises what D judges with one
:class:`~diffaug_noise.DiffusionNoise`, gives D the ``t`` of each sample through an attached
conditioning (:mod:`~diffaug_noise.attached`: input channels, FiLM hooks, or none), and lets an
:class:`~diffaug_noise.AdaptiveController` read D's logits on the reals of a D step; ``step()``,
once per D step, adapts ``T``. The call forms real discriminators have:

- ``D(x)``: one batch; ``D(real, real=True)`` marks the reals of a D step, whose logits the
  controller reads (or, where the call is in code you do not edit, ``with D.reals(x): ...``: a call
  on ``x``'s storage, such as ``x.detach()``, counts as the reals);
- ``pair=True``, ``D(real, fake)`` (HiFi-GAN's and BigVGAN's multi-period and multi-resolution Ds):
  one ``t`` per pair and, with ``share_eps`` (default), one ``eps``, so feature matching compares
  noised real and noised generated features like for like; the controller reads a call whose fake
  needs no gradient (a D step judges detached fakes);
- ``condition_channels=k``: the first ``k`` input channels are a condition, left clean (pix2pix's
  ``D(cat(A, B))``); ``-k``: the last ``k`` (taming's ``D(cat(x, cond))``);
- a real and a fake judged in two calls (a D step's ``D(real)`` then ``D(fake)``, as autoencoder
  losses write it): ``with D.paired(): ...`` gives sample ``i`` of the second call the first call's
  ``t`` (and, with ``share_eps``, its ``eps``);
- outputs that are lists (multi-scale, multi-period): every logit tensor is read, a list's last
  element where D returns ``[features..., logits]`` per scale; ``logits=`` says otherwise.

How to read "D is sure of the reals" depends on the loss: ``loss`` picks the controller's signal
(:data:`LOSSES`; docs/losses.md). The state (``p``, ``T``, the controller's step and accumulators, the
conditioning's weights) is in :meth:`state_dict`, so a checkpoint of the wrapped D resumes it; a
rejected load changes nothing. Build D's optimiser after wrapping: the conditioning adds parameters.

Example:
    >>> D = nn.Sequential(nn.Conv2d(3, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(8, 1, 4, 1, 1))  # a PatchGAN
    >>> D = DiffusionAwareDiscriminator(D, batch_size=4, loss="lsgan", interval=1, kimg=1)
    >>> real_logits = D(torch.randn(4, 3, 16, 16), real=True)     # the reals of a D step
    >>> fake_logits = D(torch.randn(4, 3, 16, 16))
    >>> D.step(), D.noise.T > D.noise.t_min or D.noise.p == 0.0   # once per D step
    (True, True)
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses

import torch
from torch import nn

from .attached import AttachedConditioning
from .conditioning import CONDITIONINGS
from .controller import AdaptiveController
from .noise import DiffusionNoise


@dataclasses.dataclass(frozen=True)
class Loss:
    """How a loss's D logits say "sure of the reals": the controller's ``signal`` and ``centre``."""

    signal: str
    centre: float = 0.0
    meaning: str = ""


LOSSES = {
    "nonsaturating": Loss("sign", 0.0, "logits centred at 0 (StyleGAN's softplus losses, BCE with logits)"),
    "vanilla": Loss("sign", 0.0, "pix2pix's and taming's name for BCE with logits"),
    "hinge": Loss("sign", 0.0, "margins at ±1 around 0"),
    "lsgan": Loss("sign", 0.5, "least squares with targets 0 (fake) and 1 (real): HiFi-GAN, BigVGAN, pix2pix"),
    "relativistic": Loss("relativistic", 0.0, "D(real) - D(fake) per pair (R3GAN, RpGAN)"),
    "wgan": Loss("relativistic", 0.0, "a critic's values have no fixed centre; pairs are compared"),
    "wgangp": Loss("relativistic", 0.0, "pix2pix's name for a WGAN-GP critic"),
}


def _flat(logits) -> torch.Tensor:
    """Every logit of an output, as one 1-D tensor: a tensor, or a list whose items are tensors or lists ending in
    the logits (per scale ``[features..., logits]``)."""
    if isinstance(logits, torch.Tensor):
        return logits.detach().flatten()
    if isinstance(logits, (list, tuple)) and logits:
        return torch.cat([_flat(item[-1] if isinstance(item, (list, tuple)) else item) for item in logits])
    raise TypeError(f"cannot find logits in a {type(logits).__name__}; pass logits=... (output -> logits)")


class _LastDraw:
    """The last draw of a group of wrappers: a second D judging the same tensors gets the same ``t`` and noise.

    It holds the inputs themselves, so their memory cannot be reused for other tensors while it
    compares addresses (a step's new batch can land where the last one was).
    """

    def __init__(self):
        self.inputs, self.drawn = (), None
        self.pairing, self.pair_draw = False, None  # inside paired(): the block's first (t, eps), shared by its calls

    @staticmethod
    def same_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
        """``a`` holds ``b``'s values: its storage, layout and dtype (``b.detach()``, a contiguous ``b``)."""
        return (isinstance(a, torch.Tensor) and a.data_ptr() == b.data_ptr() and a.shape == b.shape
                and a.stride() == b.stride() and a.dtype == b.dtype)

    @classmethod
    def _same(cls, a: torch.Tensor, b: torch.Tensor) -> bool:
        return cls.same_storage(a, b) and a._version == b._version and a.requires_grad == b.requires_grad

    def get(self, inputs: tuple):
        if len(inputs) == len(self.inputs) and all(self._same(a, b) for a, b in zip(inputs, self.inputs)):
            return self.drawn
        return None

    def put(self, inputs: tuple, drawn) -> None:
        self.inputs, self.drawn = inputs, drawn


class DiffusionAwareDiscriminator(nn.Module):
    """``D`` made diffusion-aware: noise, controller and ``t``-conditioning in one object; see the module docstring.

    Args:
        D: the discriminator, unmodified; the conditioning attaches to its layers.
        batch_size: images per D step over all ranks (the controller's step size), >= 1.
        loss: the loss D trains with, one of :data:`LOSSES`: which signal the controller reads.
        conditioning: how D sees ``t``: ``"film-hooks"``, ``"channels"`` or ``"none"`` (names of
            :data:`~diffaug_noise.CONDITIONINGS` that attach), or an unattached
            :class:`~diffaug_noise.attached.AttachedConditioning`.
        pair: D is called on a real/fake pair, ``D(real, fake)``: one ``t`` per pair.
        share_eps: with ``pair`` or inside :meth:`paired`, the real and the fake of a pair get the same ``eps`` too.
        condition_channels: input channels that are a condition, left clean: the first ``k``, or with ``-k``
            the last ``k`` (``pair=False`` only).
        logits: ``output -> real logits`` (a tensor or list of them) for the controller; with ``pair``,
            ``output -> (real logits, fake logits)``. Default: see the module docstring.
        noise: the :class:`~diffaug_noise.DiffusionNoise` (default: the paper's settings).
        target: the controller's target (default: its signal's).
        interval: controller interval, in D steps.
        kimg: controller speed: thousands of images for ``p`` to go from 0 to 1.
        share: another wrapper whose noise, controller and draws this one shares (several Ds judging the
            same inputs: one ``t`` for all, one ``step()`` for all); ``batch_size``, ``loss``, ``noise`` and
            the controller's knobs then come from it.
        embed_dim: width of ``t``'s embedding in the conditioning (even).
        layers: names of D's layers the conditioning hooks (default: the conditioning's own choice).
    """

    def __init__(
        self,
        D: nn.Module,
        batch_size: int | None = None,
        loss: str = "nonsaturating",
        conditioning: str | AttachedConditioning = "film-hooks",
        pair: bool = False,
        share_eps: bool = True,
        condition_channels: int = 0,
        logits=None,
        noise: DiffusionNoise | None = None,
        target: float | None = None,
        interval: int = 4,
        kimg: float = 100,
        share: DiffusionAwareDiscriminator | None = None,
        embed_dim: int = 16,
        layers: list | None = None,
    ):
        super().__init__()
        if not isinstance(D, nn.Module):
            raise TypeError(f"D must be an nn.Module; got {type(D).__name__}")
        if isinstance(condition_channels, bool) or not isinstance(condition_channels, int):
            raise ValueError(f"condition_channels must be an int (k: the first k channels, -k: the last k); got "
                             f"{condition_channels!r}")
        if pair and condition_channels:
            raise ValueError("condition_channels is for D(cat(condition, image)); a pair D(real, fake) has none")
        if logits is not None and not callable(logits):
            raise TypeError(f"logits must be a callable (output -> logits); got {type(logits).__name__}")
        if share is not None:
            if not isinstance(share, DiffusionAwareDiscriminator):
                raise TypeError(f"share must be a DiffusionAwareDiscriminator; got {type(share).__name__}")
            if noise is not None or batch_size is not None or target is not None:
                raise ValueError("with share=..., the noise, batch_size and controller come from the shared wrapper; "
                                 "give them there")
            noise, self.controller, self.loss, self._draws = share.noise, share.controller, share.loss, share._draws
        else:
            if loss not in LOSSES:
                raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
            if batch_size is None:
                raise ValueError("batch_size is required: images per D step over all ranks (the controller's step)")
            noise = DiffusionNoise() if noise is None else noise
            if not isinstance(noise, DiffusionNoise):
                raise TypeError(f"noise must be a DiffusionNoise; got {type(noise).__name__}")
            spec = LOSSES[loss]
            self.loss = loss
            self.controller = AdaptiveController(noise, target=target, interval=interval, kimg=kimg,
                                                 batch_size=batch_size, signal=spec.signal, centre=spec.centre)
            self._draws = _LastDraw()
        self.noise = noise
        if isinstance(conditioning, str):
            entry = CONDITIONINGS[conditioning]
            if not (isinstance(entry, type) and issubclass(entry, AttachedConditioning)):
                raise ValueError(f"conditioning {conditioning!r} does not attach to an existing D; choose one of "
                                 f"{', '.join(n for n, c in CONDITIONINGS.items() if _attaches(c))}")
            conditioning = entry(t_max=noise.t_max, embed_dim=embed_dim, layers=layers)
        elif not isinstance(conditioning, AttachedConditioning):
            raise TypeError(f"conditioning must be a name or an AttachedConditioning; got "
                            f"{type(conditioning).__name__}")
        self.conditioning = conditioning.attach(D)
        self.D = D
        self.pair, self.share_eps, self.condition_channels, self.logits = pair, share_eps, condition_channels, logits
        self._reals = None

    # ------------------------------------------------------------------ calls

    def forward(self, *inputs, real: bool | None = None, **kwargs):
        """Noise what D judges, run D on it with ``t`` attached, and (see ``real``) give the controller its logits.

        ``real``: single calls, True for the reals of a D step (default: a call on the tensor given to
        :meth:`reals`); pairs, whether the controller reads this call (default: when the fake needs no
        gradient). Other arguments go to D unchanged.
        """
        if self.pair:
            if len(inputs) < 2:
                raise TypeError(f"a pair D is called as D(real, fake, ...); got {len(inputs)} input(s)")
            (y_real, y_fake), t = self._draw(inputs[:2])
            with self.conditioning.given(t):
                out = self.D(y_real, y_fake, *inputs[2:], **kwargs)
            if (not inputs[1].requires_grad) if real is None else real:
                real_logits, fake_logits = self.logits(out) if self.logits is not None else (out[0], out[1])
                self.observe(real_logits, fake_logits)
            return out
        if not inputs:
            raise TypeError("D needs an input")
        (y,), t = self._draw(inputs[:1])
        with self.conditioning.given(t):
            out = self.D(y, *inputs[1:], **kwargs)
        if real is None:
            real = self._reals is not None and _LastDraw.same_storage(inputs[0], self._reals)
        if real:
            if self.controller.signal_name == "relativistic":
                raise ValueError(f"a {self.loss} loss compares pairs: call D.observe(real_logits, fake_logits) "
                                 f"instead of real=True")
            self.observe(self.logits(out) if self.logits is not None else out)
        return out

    def _draw(self, inputs: tuple):
        """``((noised inputs), t)`` for these inputs: the group's last draw when it judged the same tensors."""
        drawn = self._draws.get(inputs)
        if drawn is None:
            if self.pair:
                y_real, y_fake, t = self.noise.pair(*inputs, share_eps=self.share_eps)
                drawn = ((y_real, y_fake), t)
            else:
                x, k = inputs[0], self.condition_channels
                if k:
                    if x.ndim < 2 or x.shape[1] <= abs(k):
                        raise ValueError(f"condition_channels={k} needs inputs of more than {abs(k)} channels; got "
                                         f"shape {tuple(x.shape)}")
                    if k > 0:
                        judged, t = self._noised(x[:, k:])
                        drawn = ((torch.cat([x[:, :k], judged], dim=1),), t)
                    else:
                        judged, t = self._noised(x[:, :k])
                        drawn = ((torch.cat([judged, x[:, k:]], dim=1),), t)
                else:
                    y, t = self._noised(x)
                    drawn = ((y,), t)
            self._draws.put(inputs, drawn)
        return drawn

    def _noised(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``noise(x)``; inside :meth:`paired`, the block's first ``t`` (and ``eps``) for a batch of its shape."""
        draws = self._draws
        if not draws.pairing:
            return self.noise(x)
        first = draws.pair_draw
        if first is None or first[1].shape != x.shape:
            t, eps = self.noise.generate_parameters(x)
            draws.pair_draw = (t, eps)
        else:
            t, eps = first[0], first[1] if self.share_eps else torch.randn_like(x)
        return self.noise.apply_transform(x, t, eps), t

    @contextlib.contextmanager
    def paired(self):
        """Inside this block, single calls judge a real/fake pair in separate calls: sample ``i`` of every call gets
        ``t_i`` of the block's first call of that shape (and, with ``share_eps``, its ``eps``).

        For a D step written as ``D(real)`` then ``D(fake)`` (taming's and latent-diffusion's losses, pix2pix's):
        one ``t`` per pair, as ``pair=True`` gives a D called on both at once. The Ds of a ``share`` group share
        the block.

        Example:
            >>> D = DiffusionAwareDiscriminator(nn.Identity(), batch_size=4, conditioning="none",
            ...                                 noise=DiffusionNoise(p=1.0))
            >>> real, fake = torch.ones(4, 3), torch.zeros(4, 3)
            >>> with D.paired():
            ...     y_real, y_fake = D(real), D(fake)  # this D returns what it judges
            >>> difference = y_real - y_fake  # sqrt(abar_t_i) (real - fake): eps cancels, t_i per row
            >>> torch.allclose(difference, difference[:, :1].expand(4, 3)), len(difference[:, 0].unique()) > 1
            (True, True)
        """
        draws = self._draws
        if draws.pairing:
            raise RuntimeError("paired() blocks do not nest: a pair is one real and one fake call")
        draws.pairing, draws.pair_draw = True, None
        try:
            yield self
        finally:
            draws.pairing, draws.pair_draw = False, None

    @contextlib.contextmanager
    def reals(self, x: torch.Tensor):
        """Inside this block, a single call on ``x``'s values (``x.detach()``, ``x.contiguous()``) is the reals of a D
        step: for a D called in code you do not edit (an autoencoder's loss)."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"reals must be a tensor; got {type(x).__name__}")
        self._reals = x
        try:
            yield self
        finally:
            self._reals = None

    def observe(self, real_logits, fake_logits=None) -> None:
        """Give the controller D's logits on the reals (and, for a pair-reading signal, on their fakes)."""
        reads_fakes = self.controller.signal != "sign"  # the sign signal reads the reals alone
        fake = _flat(fake_logits) if reads_fakes and fake_logits is not None else None
        self.controller.observe(_flat(real_logits), fake)

    def step(self) -> bool:
        """Once per D step (after its last accumulation round): adapt ``p`` every ``interval`` steps; True when it
        did."""
        return self.controller.update()

    # ------------------------------------------------------------------ state

    def get_extra_state(self) -> dict:
        return {"controller": self.controller.state_dict(), "loss": self.loss}

    def set_extra_state(self, state: dict) -> None:
        self.controller.load_state_dict(state["controller"])  # checked in load_state_dict before anything changed

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load everything or nothing: keys, shapes, the noise and the controller are checked before D changes."""
        self.check_state_dict(state_dict, strict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def check_state_dict(self, state_dict, strict: bool = True) -> None:
        """Raise ``ValueError`` naming what does not fit if :meth:`load_state_dict` would reject ``state_dict``;
        changes nothing (for a parent that loads this wrapper among its own modules and must check first)."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict; got {type(state_dict).__name__}")
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise ValueError(f"state_dict does not fit this wrapped D: missing {missing[:5]}, unexpected "
                             f"{unexpected[:5]}; was it saved with the same D, conditioning and layers?")
        wrong = [f"{k}: saved {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state_dict.items()
                 if k in own and isinstance(own[k], torch.Tensor)
                 and (not isinstance(v, torch.Tensor) or v.shape != own[k].shape)]
        if wrong:
            raise ValueError(f"state_dict shapes differ from this wrapped D ({'; '.join(wrong[:5])}); was it saved "
                             f"with the same D, conditioning and embed_dim?")
        extra = state_dict.get("_extra_state")
        if not isinstance(extra, dict) or "controller" not in extra or extra.get("loss") != self.loss:
            raise ValueError(f"state_dict holds no controller state of a {self.loss!r} wrapper; was it saved by "
                             f"DiffusionAwareDiscriminator.state_dict()?")
        self.noise.checked_state(state_dict, "noise.")
        probe = copy.deepcopy(self.controller)  # its own copy of the noise: the check changes nothing here
        probe.load_state_dict(extra["controller"])

    def extra_repr(self) -> str:
        form = "pair" if self.pair else (f"condition_channels={self.condition_channels}" if self.condition_channels
                                         else "single")
        return f"loss={self.loss!r}, {form}, conditioning={type(self.conditioning).__name__}"


def _attaches(entry) -> bool:
    return isinstance(entry, type) and issubclass(entry, AttachedConditioning)


__all__ = ["LOSSES", "DiffusionAwareDiscriminator", "Loss"]
