"""The machinery every adapter shares: patch names for a while, in this process and in spawned ranks.

- :func:`patched_attributes`: set attributes for the length of a ``with`` block, then restore them.
- :func:`spawn_patch`: make ``torch.multiprocessing.spawn`` apply a patch factory in every child
  (children are fresh interpreters that patches made in the parent never reach).
- :func:`construct`: build the upstream class named in upstream's options, inside ours.
- :class:`WrappedLoss`: the base of the adapters' loss objects (delegation to upstream's loss).
- :func:`broadcast_noise_state` and :func:`tick_line_patch`: the noise's state identical on every
  rank, and shown on upstream's console tick line.
"""
from __future__ import annotations

import builtins
import contextlib
import functools
import importlib
import math

import torch

from diffaug_noise.noise import DiffusionNoise


def broadcast_noise_state(noise: DiffusionNoise) -> None:
    """Give every rank rank 0's ``p``, ``T`` and tables (what ``--resume`` restored there)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        for buffer in noise.buffers():
            torch.distributed.broadcast(buffer, src=0)


class WrappedLoss:
    """Base of our loss objects: upstream's loss is ``self.inner``; what we do not override is its.

    Subclasses set ``self._real`` to the batch of reals around ``inner.accumulate_gradients``;
    :meth:`is_real` recognises it in ``run_D`` (upstream passes ``real_img.detach()``: same storage).
    """

    inner = None
    _real = None

    def __getattr__(self, name):  # pl_mean, run_G, run_cl, G, ...: the upstream loss's
        return getattr(self.inner, name)

    def is_real(self, img: torch.Tensor) -> bool:
        return self._real is not None and img.data_ptr() == self._real.data_ptr() and img.shape == self._real.shape


def construct(class_name: str, **kwargs):
    """Build ``module.Class`` named by a dotted string (how upstream names classes in its options)."""
    module_name, attribute = class_name.rsplit(".", 1)
    return getattr(importlib.import_module(module_name), attribute)(**kwargs)


@contextlib.contextmanager
def patched_attributes(patches: list[tuple[object, str, object]]):
    """Set ``obj.name = value`` for each patch, and restore (or delete) them on exit.

    Two patches of one attribute are refused: each value was made from the attribute as it was when
    the list was built, so the one set last would silently drop the other (wrap one in the other instead).
    """
    targets = [(id(obj), name) for obj, name, _ in patches]
    twice = sorted({f"{getattr(obj, '__name__', type(obj).__name__)}.{name}"
                    for (obj, name, _), target in zip(patches, targets) if targets.count(target) > 1})
    if twice:
        raise ValueError(f"two patches set {', '.join(twice)}: the one set last would drop the other; "
                         f"make one wrap the other")
    missing = object()
    saved = [(obj, name, obj.__dict__.get(name, missing) if isinstance(obj, type) else getattr(obj, name, missing))
             for obj, name, _ in patches]
    try:
        for obj, name, value in patches:
            setattr(obj, name, value)
        yield
    finally:
        for obj, name, old in reversed(saved):
            if old is missing:
                delattr(obj, name)
            else:
                setattr(obj, name, old)


def run_rank_with(patch_factory, fn, *args):
    """Entry of a spawned rank: apply ``patch_factory()``'s patches in this process, then run ``fn``."""
    with patched_attributes(patch_factory()):
        return fn(*args)


def spawn_patch(patch_factory) -> list:
    """Make ``torch.multiprocessing.spawn`` apply ``patch_factory``'s patches inside every child.

    Children are fresh interpreters: patches made in the parent do not reach them. ``patch_factory``
    must be picklable (a module-level function or a ``functools.partial`` of one).
    """
    original = torch.multiprocessing.spawn

    def spawn(fn, args=(), *rest, **kwargs):
        return original(functools.partial(run_rank_with, patch_factory, fn), args, *rest, **kwargs)

    return [(torch.multiprocessing, "spawn", spawn)]


_ACTIVE_CONTROLLER = []  # the controller of this process's training run (one per rank), for the tick line


def show_on_tick_line(controller) -> None:
    """Make ``controller`` the one whose ``p``, ``T`` and ``r_d`` :func:`tick_line_patch` appends."""
    _ACTIVE_CONTROLLER[:] = [controller]


def _tick_print(*args, **kwargs):
    if _ACTIVE_CONTROLLER and args and isinstance(args[0], str) and args[0].startswith("tick "):
        ctrl = _ACTIVE_CONTROLLER[0]
        r_d = "nan" if math.isnan(ctrl.r_d) else f"{ctrl.r_d:<+6.3f}"
        args = (f"{args[0]} diffusion p {ctrl.noise.p:<7.5f} T {ctrl.noise.T:<5d} r_d {r_d}",) + args[1:]
    builtins.print(*args, **kwargs)


def tick_line_patch(loop_module) -> list:
    """Append the diffusion state to the tick lines ``loop_module`` prints (console and upstream's log.txt).

    Upstream's loop prints ``tick 12 kimg 48.0 ... augment 0.000`` and its logger copies stdout to
    ``log.txt``; the module-level name ``print`` shadows the builtin inside that module only.
    """
    return [(loop_module, "print", _tick_print)]
