r"""``t`` for a discriminator whose code is not yours to edit: conditionings attached to its own layers.

A PatchGAN, a multi-period or multi-resolution D has no label input, and it sits in someone else's
code. These modules make it depend on ``t`` from the outside, through PyTorch's hooks on its layers,
and start as the identity: right after attaching, ``D`` gives what it gave before, bit for bit, and
learns to use ``t`` as it trains.

- :class:`TimestepChannels` (``"channels"``): an embedding of ``t``, broadcast over the input, as
  extra input channels of D's *entry* convolutions, whose new weights start at zero. Cheapest:
  through the first layer only, ``t`` acts as a learned, ``t``-dependent bias of its output.
- :class:`TimestepFiLM` (``"film-hooks"``): after each of D's convolutions (and linear layers), a
  scale and shift from ``e(t)`` in AdaGN's form without the norm, :math:`h \mapsto (1 + \gamma(e))\,h
  + \beta(e)`, with :math:`[\gamma, \beta] = W e + b` zero-initialised (a forward hook). Every layer
  sees ``t``: the conditioning the digits study found D needs (docs/losses.md).
- :class:`Blind` (``"none"``): no ``t`` at all (the paper's ProjectedGAN fork; an ablation).

Each attaches once to one D (:meth:`AttachedConditioning.attach`), then conditions every forward of
D run inside :meth:`~AttachedConditioning.given`; a forward outside it sees ``t = 0`` (clean inputs).
A layer's batch must be ``len(t)`` or a multiple of it (a D that stacks reals and fakes); anything
else is an error naming the layer. The new parameters belong to the conditioning (a submodule of
:class:`~diffaug_noise.DiffusionAwareDiscriminator`); D's own are untouched.

Example:
    >>> D = nn.Sequential(nn.Conv2d(3, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(8, 1, 4, 1, 0))
    >>> x = torch.randn(2, 3, 8, 8)
    >>> before = D(x)
    >>> film = TimestepFiLM(t_max=1000).attach(D)
    >>> with film.given(torch.tensor([5, 500])):
    ...     after = D(x)
    >>> torch.equal(before, after), film.layers
    (True, ['0', '2'])
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from .conditioning import CONDITIONINGS, TimestepEmbedding

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _is_conv(module: nn.Module) -> bool:
    return isinstance(module, _CONVS)


def _key(name: str) -> str:
    """A layer's name as a key of a ModuleDict or ParameterDict (no dots, not empty: D itself is ``(root)``)."""
    return name.replace(".", "-") or "(root)"


def entry_layers(D: nn.Module) -> list:
    """The names of D's entry convolutions: the first of each sub-discriminator, or D's first.

    Sub-discriminators are the members of D's first ``nn.ModuleList`` whose members are not
    convolutions themselves but hold some (HiFi-GAN's and BigVGAN's multi-period, multi-scale and
    multi-resolution Ds); without one, D's first convolution in registration order (a PatchGAN).

    Example:
        >>> class TwoScales(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.discriminators = nn.ModuleList(nn.Sequential(nn.Conv1d(1, 4, 3), nn.Conv1d(4, 1, 3))
        ...                                             for _ in range(2))
        >>> entry_layers(TwoScales())
        ['discriminators.0.0', 'discriminators.1.0']
    """
    def first_conv(module, prefix):
        return next((f"{prefix}{'.' if prefix and name else ''}{name}" for name, m in module.named_modules()
                     if _is_conv(m)), None)

    for name, module in D.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 1 and all(
                not _is_conv(m) and any(_is_conv(x) for x in m.modules()) for m in module):
            return [first_conv(m, f"{name}.{i}") for i, m in enumerate(module)]
    first = first_conv(D, "")
    if first is None:
        raise ValueError(f"{type(D).__name__} has no Conv1d/2d/3d layer to take t as input channels; use "
                         f"conditioning='film-hooks' or name the layers")
    return [first]


class AttachedConditioning(nn.Module):
    """Base of the conditionings that attach to an existing D.

    A subclass implements :meth:`install` (its hooks and parameters for D); :meth:`attach` and
    :meth:`given` are shared. ``t`` is embedded once per :meth:`given` block
    (:class:`~diffaug_noise.TimestepEmbedding`: sinusoids up to ``2 t_max``, then an MLP).

    Args:
        t_max: the largest ``t`` it will see (sets the embedding's longest period).
        embed_dim: width of the embedding of ``t`` (even).
        layers: names of D's layers to condition (``D.named_modules()``); None: the subclass's default.
    """

    uses_t = True  # False: the conditioning ignores t (Blind)

    def __init__(self, t_max: int = 1000, embed_dim: int = 16, layers: list | None = None):
        super().__init__()
        self.embedding = TimestepEmbedding(embed_dim, max_period=2.0 * max(int(t_max), 1)) if self.uses_t else None
        self.embed_dim = embed_dim
        self.layers = None if layers is None else list(layers)
        self._handles: list = []
        self._e = None  # the embedding of the current t, inside given()
        self._t = None

    def install(self, D: nn.Module, modules: dict) -> list:
        """Add hooks to ``D``'s layers (``modules``: name -> module); return the names conditioned."""
        raise NotImplementedError

    def attach(self, D: nn.Module) -> AttachedConditioning:
        """Hook into ``D`` (once); returns self."""
        if getattr(self, "_attached", False):
            raise RuntimeError(f"{type(self).__name__} is attached already; build one per D")
        modules = dict(D.named_modules())
        if self.layers is not None:
            unknown = [n for n in self.layers if n not in modules]
            if unknown:
                raise ValueError(f"layers {unknown} are not in {type(D).__name__}; its layers: "
                                 f"{', '.join(n for n in modules if n)}")
        self.layers = self.install(D, modules)
        self._attached = True
        return self

    @contextlib.contextmanager
    def given(self, t: torch.Tensor):
        """Condition D's forwards in this block on ``t`` (``[B]`` int64)."""
        self._t = t
        self._e = self.embedding(t) if self.embedding is not None else None
        try:
            yield self
        finally:
            self._t, self._e = None, None

    def current(self, batch: int, like: torch.Tensor, layer: str) -> torch.Tensor:
        """The embedding for a layer's ``batch``: ``e(t)``, repeated for a batch that stacks several (``e(0)``
        outside :meth:`given`)."""
        e = self._e
        if e is None:
            e = self.embedding(torch.zeros(batch, dtype=torch.int64, device=like.device))
        if batch != e.shape[0]:
            if batch % e.shape[0]:
                raise ValueError(f"layer {layer!r} sees a batch of {batch}, not a multiple of the {e.shape[0]} values "
                                 f"of t; leave it out with layers=[...]")
            e = e.repeat(batch // e.shape[0], 1)
        return e.to(like.dtype)


class TimestepChannels(AttachedConditioning):
    r"""``t`` as extra input channels of D's entry convolutions, their new weights at zero; see the module docstring.

    An entry convolution ``conv(x; W)`` becomes ``conv([x, e(t)]; [W, W_t])`` with ``e(t)`` broadcast over
    ``x``'s positions and ``W_t = 0`` at first. A convolution is linear in its input channels, so this
    is computed as ``conv(x; W) + conv(e(t); W_t)`` (a forward hook adding the second term, with the
    layer's own stride, padding and dilation): D's own weights, including weight- or spectral-normed
    ones, stay as they are, and at first the added term is exactly zero.

    Example:
        >>> D = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv1d(4, 1, 3, padding=1))
        >>> x = torch.randn(2, 1, 16)
        >>> before = D(x)
        >>> channels = TimestepChannels(embed_dim=4).attach(D)
        >>> channels.layers, tuple(channels.weights["0"].shape)   # [out, embed_dim, kernel]
        (['0'], (4, 4, 3))
        >>> with channels.given(torch.tensor([3, 30])):
        ...     torch.equal(D(x), before)
        True
    """

    def install(self, D, modules):
        names = self.layers if self.layers is not None else entry_layers(D)
        self.weights = nn.ParameterDict()
        for name in names:
            conv = modules[name]
            if not _is_conv(conv) or conv.groups != 1:
                what = type(conv).__name__ if not _is_conv(conv) else f"{type(conv).__name__} with groups={conv.groups}"
                raise ValueError(f"layer {name!r} is a {what}: it cannot take t as input channels (a Conv1d/2d/3d with "
                                 f"groups=1 can); use conditioning='film-hooks'")
            weight = nn.Parameter(conv.weight.new_zeros(conv.out_channels, self.embed_dim, *conv.kernel_size))
            self.weights[_key(name)] = weight
            self._handles.append(conv.register_forward_hook(self._hook(name, weight)))
        return names

    def _hook(self, name: str, weight: nn.Parameter):
        def add_channels(conv, args, out):
            x = args[0]
            e = self.current(x.shape[0], x, name)
            channels = e.view(*e.shape, *([1] * (x.ndim - 2))).expand(*e.shape, *x.shape[2:])
            return out + conv._conv_forward(channels, weight.to(out.dtype), None)
        return add_channels


class TimestepFiLM(AttachedConditioning):
    r"""A zero-initialised scale and shift from ``e(t)`` after D's layers; see the module docstring.

    Default layers: every ``Conv1d``/``Conv2d``/``Conv3d`` and ``Linear`` of D.

    Example:
        >>> D = nn.Sequential(nn.Linear(4, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))
        >>> film = TimestepFiLM(embed_dim=8).attach(D)
        >>> sorted(film.modulations), film.modulations["0"].out_features   # 2 x 8 (scale and shift)
        (['0', '2'], 16)
    """

    def install(self, D, modules):
        names = self.layers if self.layers is not None else [
            n for n, m in modules.items() if _is_conv(m) or isinstance(m, nn.Linear)]
        if not names:
            raise ValueError(f"{type(D).__name__} has no Conv or Linear layer to modulate; name the layers")
        self.modulations = nn.ModuleDict()
        for name in names:
            layer = modules[name]
            width = getattr(layer, "out_channels", getattr(layer, "out_features", None))
            if width is None:
                raise ValueError(f"layer {name!r} ({type(layer).__name__}) has no out_channels or out_features to "
                                 f"modulate")
            modulation = nn.Linear(self.embed_dim, 2 * width)
            nn.init.zeros_(modulation.weight)
            nn.init.zeros_(modulation.bias)
            self.modulations[_key(name)] = modulation
            self._handles.append(layer.register_forward_hook(self._hook(name, modulation)))
        return names

    def _hook(self, name: str, modulation: nn.Linear):
        def film(layer, args, out):
            e = self.current(out.shape[0], out, name)
            scale, shift = modulation(e).view(out.shape[0], 2, out.shape[1], *([1] * (out.ndim - 2))).unbind(1)
            return out * (1 + scale) + shift
        return film


class Blind(AttachedConditioning):
    """No ``t`` at all: D judges the noised inputs blind to their noise level (an ablation; the ProjectedGAN fork).

    Example:
        >>> Blind().attach(nn.Linear(2, 1)).layers
        []
    """

    uses_t = False

    def install(self, D, modules):
        return []


for _name, _cls in (("channels", TimestepChannels), ("film-hooks", TimestepFiLM), ("none", Blind)):
    CONDITIONINGS.register(_name, _cls)

__all__ = ["AttachedConditioning", "Blind", "TimestepChannels", "TimestepFiLM", "entry_layers"]
