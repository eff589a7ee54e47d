"""The machinery every adapter shares: patch names for a while, in this process and in spawned ranks.

- :func:`patched_attributes`: set attributes for the length of a ``with`` block, then restore them
  (a :class:`Wrap` value wraps what is there, so shims can compose).
- :func:`spawn_patch`: make ``torch.multiprocessing.spawn`` apply a patch factory in every child
  (children are fresh interpreters that patches made in the parent never reach).
- :func:`construct`: build the upstream class named in upstream's options, inside ours.
- :func:`broadcast_noise_state` and :func:`tick_line_patch`: the noise's state identical on every
  rank, and shown on upstream's console tick line; :func:`progress_line`: a line between ticks.
"""
from __future__ import annotations

import builtins
import contextlib
import functools
import importlib
import math
import os
import sys
import time

import torch

from diffaug_noise.noise import DiffusionNoise


def broadcast_noise_state(noise: DiffusionNoise) -> None:
    """Give every rank rank 0's ``p``, ``T`` and tables (what ``--resume`` restored there)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        for buffer in noise.buffers():
            torch.distributed.broadcast(buffer, src=0)


def construct(class_name: str, **kwargs):
    """Build ``module.Class`` named by a dotted string (how upstream names classes in its options)."""
    module_name, attribute = class_name.rsplit(".", 1)
    return getattr(importlib.import_module(module_name), attribute)(**kwargs)


class Wrap:
    """A patch value that wraps whatever the attribute holds when it is applied: ``fn(current) -> new``
    (``current`` is None when the attribute is absent, e.g. a module using the builtin ``print``).

    Wrappers of one attribute compose in the order of the patch list (after at most one plain
    value, which must come first), so two shims can both wrap, say, upstream's ``training_loop``.
    """

    def __init__(self, fn):
        self.fn = fn


@contextlib.contextmanager
def patched_attributes(patches: list[tuple[object, str, object]]):
    """Set ``obj.name = value`` (``obj[name] = value`` for a dict, e.g. ``sys.modules``) for each patch, and restore
    (or delete) them on exit; a :class:`Wrap` value wraps the attribute as it is at that moment.

    Two plain patches of one attribute are refused, as is a plain one after a wrapper: each plain value
    was made from the attribute as it was when the list was built, so the one set last would silently
    drop the other (make one a :class:`Wrap`).
    """
    seen, twice = {}, set()
    for obj, name, value in patches:
        key = (id(obj), name)
        kinds = seen.setdefault(key, [])
        if not isinstance(value, Wrap) and kinds:
            twice.add(f"{getattr(obj, '__name__', type(obj).__name__)}.{name}")
        kinds.append(value)
    if twice:
        raise ValueError(f"two patches set {', '.join(sorted(twice))}: the one set last would drop the other; "
                         f"make the later one a Wrap")
    missing = object()

    def current(obj, name):
        if isinstance(obj, dict):
            return obj.get(name, missing)
        return obj.__dict__.get(name, missing) if isinstance(obj, type) else getattr(obj, name, missing)

    def put(obj, name, value):
        if isinstance(obj, dict):
            obj[name] = value
        else:
            setattr(obj, name, value)

    def drop(obj, name):
        if isinstance(obj, dict):
            obj.pop(name, None)
        else:
            delattr(obj, name)

    saved = [(obj, name, current(obj, name)) for obj, name, _ in patches]
    try:
        for obj, name, value in patches:
            if isinstance(value, Wrap):
                now = current(obj, name)
                value = value.fn(None if now is missing else now)
            put(obj, name, value)
        yield
    finally:
        for obj, name, old in reversed(saved):
            if old is missing:
                drop(obj, name)
            else:
                put(obj, name, old)


class FunctionByName:
    """A module-level function that pickles as its name and is looked up when called.

    A spawned rank unpickles its entry before anything of ours runs in it; unpickling upstream's
    ``train.subprocess_fn`` itself would import ``train`` (and all it imports) there and then, before
    the rank's patches (an import shim among them) are applied.
    """

    def __init__(self, fn):
        self.module, self.name = fn.__module__, fn.__qualname__

    def __call__(self, *args):
        return getattr(importlib.import_module(self.module), self.name)(*args)


def run_rank_with(patch_factory, fn, *args):
    """Entry of a spawned rank: apply ``patch_factory()``'s patches in this process, run ``fn``, and exit.

    A rank that finished leaves at once (``os._exit(0)`` after its process group is torn down and its
    output flushed): upstream leaves the group to interpreter exit, where a finished CPU rank aborted
    ("terminate called without an active exception", SIGABRT, in about one run in twelve of two gloo
    ranks, after all its work), and spawn then reports a finished run as failed. A rank that raises
    raises as before.
    """
    with patched_attributes(patch_factory()):
        fn(*args)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()  # no rank tears the group down while a peer still talks to it
        torch.distributed.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def spawn_patch(patch_factory) -> list:
    """Make ``torch.multiprocessing.spawn`` apply ``patch_factory``'s patches inside every child.

    Children are fresh interpreters: patches made in the parent do not reach them. ``patch_factory``
    must be picklable (a module-level function or a ``functools.partial`` of one). A module-level
    ``fn`` travels by name (:class:`FunctionByName`), so the child imports upstream under its patches.
    """
    original = torch.multiprocessing.spawn

    def spawn(fn, args=(), *rest, **kwargs):
        if "<locals>" not in getattr(fn, "__qualname__", "<locals>") and hasattr(fn, "__module__"):
            fn = FunctionByName(fn)
        return original(functools.partial(run_rank_with, patch_factory, fn), args, *rest, **kwargs)

    return [(torch.multiprocessing, "spawn", spawn)]


_ACTIVE_CONTROLLER = []  # the controller of this process's training run (one per rank), for the tick line


def show_on_tick_line(controller) -> None:
    """Make ``controller`` the one whose ``p``, ``T`` and ``r_d`` :func:`tick_line_patch` appends (a new run: the
    progress lines start afresh)."""
    _ACTIVE_CONTROLLER[:] = [controller]
    _LAST_LINE.update(time=None, nimg=None)


_DRIFT_SHOWN = set()  # ids of the controllers whose drift message a tick line carried already
PROGRESS_SECONDS = 30.0  # a progress line when this long passed without a tick or progress line
_clock = time.monotonic
_LAST_LINE = {"time": None, "nimg": None}  # when the last tick or progress line was printed, and at what count


def progress_line(controller, nimg: int) -> None:
    """Print ``  kimg ... s/iteration  diffusion p ... T ...`` when :data:`PROGRESS_SECONDS` passed since the
    last tick or progress line; the caller is rank 0, once per training step, at ``nimg`` images.

    Upstream prints only at its ticks (4 kimg by default): on a CPU, with seconds per iteration, that
    is silence for the whole run. The line goes to the console and upstream's ``log.txt``; it does
    not start with ``tick``, so what reads tick lines skips it.
    """
    now = _clock()
    if _LAST_LINE["time"] is None:
        _LAST_LINE.update(time=now, nimg=nimg)
        return
    if now - _LAST_LINE["time"] < PROGRESS_SECONDS:
        return
    steps = max((nimg - _LAST_LINE["nimg"]) // controller.batch_size, 1)
    builtins.print(f"  kimg {nimg / 1000:<10.3f} {(now - _LAST_LINE['time']) / steps:.2f} s/iteration  "
                   f"diffusion p {controller.noise.p:<7.5f} T {controller.noise.T}", flush=True)
    _LAST_LINE.update(time=now, nimg=nimg)


def _tick_print(*args, **kwargs):
    if args and isinstance(args[0], str) and args[0].startswith("tick "):
        _LAST_LINE["time"] = _clock()  # a tick line is progress too; the count is the loss's to tell
    if _ACTIVE_CONTROLLER and args and isinstance(args[0], str) and args[0].startswith("tick "):
        ctrl = _ACTIVE_CONTROLLER[0]
        r_d = "none yet" if math.isnan(ctrl.r_d) else f"{ctrl.r_d:<+6.3f}"  # nan: no update has read D yet
        line = f"{args[0]} diffusion p {ctrl.noise.p:<7.5f} T {ctrl.noise.T:<5d} r_d {r_d}"
        if ctrl.drift is not None and id(ctrl) not in _DRIFT_SHOWN:  # once, on the first tick line after it spoke
            _DRIFT_SHOWN.add(id(ctrl))
            line += f" | drift guard: {ctrl.drift}"
        args = (line,) + args[1:]
    builtins.print(*args, **kwargs)


def tick_line_patch(loop_module) -> list:
    """Append the diffusion state to the tick lines ``loop_module`` prints (console and upstream's log.txt).

    Upstream's loop prints ``tick 12 kimg 48.0 ... augment 0.000`` and its logger copies stdout to
    ``log.txt``; the module-level name ``print`` shadows the builtin inside that module only.
    """
    return [(loop_module, "print", _tick_print)]
