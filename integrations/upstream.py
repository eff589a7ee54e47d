"""What every upstream adapter needs: find and check the checkout, patch names for a while, run ranks with shims.

Nothing here knows a particular codebase; each adapter module names its own upstream modules,
classes and shims.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import os
import pathlib
import sys
import types

import torch

from diffaug_noise.noise import DiffusionNoise
from diffaug_noise.presets import preset_kwargs


class UpstreamError(RuntimeError):
    """The upstream checkout is missing or is not the codebase the adapter expects."""


@dataclasses.dataclass(frozen=True)
class Upstream:
    """One StyleGAN2-ADA-based codebase: where to get it, how to recognise it, what we patch."""

    name: str  # for messages
    clone: str  # the command that gets the tested checkout
    env_var: str  # where --repo defaults from
    commit: str  # the upstream commit the adapter is tested against
    markers: tuple  # files a checkout must have
    names: dict  # module -> attributes we patch or build on (checked before patching)
    default_preset: str  # the official fork's preset
    shims: str  # dotted name of the function returning its opt-in shims


@dataclasses.dataclass
class PresetOptions:
    """The paper's knobs shared by every adapter; ``None`` takes the preset's value."""

    preset: str = "paper"  # noise and controller settings (diffaug_noise.PRESETS)
    target: float | None = None  # controller target for r_d = E[sign D(noised real)]
    ts_dist: str | None = None  # law of t over 1..T: priority or uniform
    noise_sd: float | None = None  # sigma, in the units of what is noised
    t_min: int | None = None  # T at p = 0
    t_max: int | None = None  # T at p = 1

    def __post_init__(self):
        preset_kwargs(self.preset, "noise")  # raises on an unknown preset, listing the names

    def noise_kwargs(self) -> dict:
        kwargs = preset_kwargs(self.preset, "noise")
        for key, value in (("t_dist", self.ts_dist), ("sigma", self.noise_sd), ("t_min", self.t_min), ("t_max", self.t_max)):
            if value is not None:
                kwargs[key] = value
        DiffusionNoise(**kwargs)  # validate now, in the launching process, not in a spawned rank
        return kwargs

    def controller_kwargs(self) -> dict:
        kwargs = preset_kwargs(self.preset, "controller")
        if self.target is not None:
            kwargs["target"] = self.target
        return kwargs


def broadcast_noise_state(noise: DiffusionNoise) -> None:
    """Give every rank rank 0's ``p``, ``T`` and tables (what ``--resume`` restored there)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        for buffer in noise.buffers():
            torch.distributed.broadcast(buffer, src=0)


def require_trust_for_resume(upstream_args: list, trust_pickle: bool) -> None:
    """Refuse to let upstream unpickle a ``--resume`` snapshot unless the user said they trust it."""
    if any(a == "--resume" or a.startswith("--resume=") for a in upstream_args) and not trust_pickle:
        raise UpstreamError("--resume loads an upstream network pickle, and unpickling runs code named in the file; "
                            "pass --trust-pickle if you trust it (e.g. your own snapshot)")


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


def locate_repo(repo, env_var: str, marker_files: list[str], clone: str) -> pathlib.Path:
    """The checkout to use: ``repo``, else ``$env_var``; it must hold ``marker_files``."""
    if repo is None:
        repo = os.environ.get(env_var)
    if not repo:
        raise UpstreamError(f"no upstream checkout given: pass --repo PATH or set {env_var}; to get one: {clone}")
    path = pathlib.Path(repo).expanduser().resolve()
    missing = [f for f in marker_files if not (path / f).is_file()]
    if missing:
        raise UpstreamError(f"{str(path)!r} is not the expected checkout (missing {', '.join(missing)}); to get one: {clone}")
    return path


def import_checked(repo: pathlib.Path, names: dict[str, list[str]], clone: str) -> dict[str, types.ModuleType]:
    """Import each upstream module of ``names`` from ``repo`` and check that the names we patch exist."""
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    modules, missing = {}, []
    for module_name, attributes in names.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise UpstreamError(f"cannot import {module_name} from {str(repo)!r}: {err}. Install upstream's requirements, "
                                f"or get the expected checkout: {clone}") from err
        if not str(getattr(module, "__file__", "")).startswith(str(repo)):
            raise UpstreamError(f"{module_name} was imported from {getattr(module, '__file__', '?')}, not from {str(repo)!r}; "
                                f"another package of that name shadows the checkout (run from a fresh process)")
        missing += [f"{module_name}.{a}" for a in attributes if not hasattr(module, a)]
        modules[module_name] = module
    if missing:
        raise UpstreamError(f"{str(repo)!r} lacks {', '.join(missing)}, which the adapter patches: an incompatible "
                            f"version? The adapter is tested against: {clone}")
    return modules


@contextlib.contextmanager
def patched_attributes(patches: list[tuple[object, str, object]]):
    """Set ``obj.name = value`` for each patch, and restore (or delete) them on exit."""
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


class _NoCudaEvent:
    """Stands in for ``torch.cuda.Event`` on a machine without CUDA: records nothing, times 0 ms."""

    cuda_event = 0  # "never recorded", as torch's own Event reports before its first record()

    def __init__(self, **kwargs):
        pass

    def record(self, *args):
        pass

    def synchronize(self):
        pass

    def elapsed_time(self, other) -> float:
        return 0.0


class CpuTorch(types.ModuleType):
    """``torch`` as seen by a training loop that hard-codes CUDA, on a machine without it.

    ``device('cuda', rank)`` becomes the CPU; CUDA events, stream and memory statistics become
    no-ops. Everything else is torch itself. Installed as the loop module's ``torch`` name only.
    """

    def __init__(self):
        super().__init__("torch")
        self.cuda = types.SimpleNamespace(
            Event=_NoCudaEvent, current_stream=lambda *a: None, synchronize=lambda *a: None,
            max_memory_allocated=lambda *a: 0, max_memory_reserved=lambda *a: 0, reset_peak_memory_stats=lambda *a: None,
            is_available=lambda: False,
        )

    @staticmethod
    def device(kind, *args, **kwargs):
        kind = str(kind)
        return torch.device("cpu") if kind.startswith("cuda") else torch.device(kind, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(torch, name)


def _sampler_init(self, data_source=None):
    """``Sampler.__init__`` that accepts (and ignores) ``data_source``, as torch < 2.2 did."""


def sampler_signature_patch() -> list:
    """Patches for code calling ``Sampler.__init__(dataset)``, which torch >= 2.2 rejects."""
    return [(torch.utils.data.Sampler, "__init__", _sampler_init)]


def cpu_patches(loop_module: types.ModuleType) -> list:
    """Patches that let ``loop_module`` (which hard-codes CUDA) run on the CPU; none if CUDA is there."""
    if torch.cuda.is_available():
        return []
    return [(loop_module, "torch", CpuTorch()), (torch.Tensor, "pin_memory", lambda self, *a, **k: self)]


def tensor_cuda_patch() -> list:
    """On a machine without CUDA, make ``tensor.cuda(device)`` a move to ``device`` (a CPU device there)."""
    if torch.cuda.is_available():
        return []
    return [(torch.Tensor, "cuda", lambda self, device=None, *a, **k: self.to("cpu" if device is None else device))]


def single_rank_group_patch(train_module: types.ModuleType) -> list:
    """Run ``train_module.subprocess_fn`` inside a one-rank process group when upstream starts none.

    For codebases that call ``torch.distributed`` collectives even on one GPU (InsGen's contrastive
    queue gathers keys across ranks unconditionally). gloo without CUDA, nccl with it.
    """
    original = train_module.subprocess_fn

    def subprocess_fn(rank, args, temp_dir):
        if args.num_gpus > 1 or torch.distributed.is_initialized():
            return original(rank=rank, args=args, temp_dir=temp_dir)
        init_file = os.path.abspath(os.path.join(temp_dir, ".single_rank_init"))
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend, init_method=f"file://{init_file}", rank=0, world_size=1)
        try:
            return original(rank=rank, args=args, temp_dir=temp_dir)
        finally:
            torch.distributed.destroy_process_group()

    return [(train_module, "subprocess_fn", subprocess_fn)]


class GridSampleTwice(torch.autograd.Function):
    r"""Bilinear ``grid_sample`` (zeros padding, ``align_corners=False``) that can be differentiated twice in its input.

    R1 differentiates ``D(augment(x))`` w.r.t. ``x`` and then backpropagates that gradient, so the
    backward of ``grid_sample`` must itself have a backward. On CUDA torch has none
    ("derivative for aten::grid_sampler_2d_backward is not implemented"). The sampling is linear in
    the input: ``y = S(grid) x``, so the input-gradient is ``S^T g`` (``grid_sampler_2d_backward``) and
    its derivative w.r.t. ``g`` is ``S`` again, a ``grid_sample``. Second-order terms through
    ``grid`` are dropped: augmentation grids carry no gradient in training.
    """

    @staticmethod
    def forward(ctx, input, grid):
        ctx.save_for_backward(input, grid)
        return torch.nn.functional.grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    @staticmethod
    def backward(ctx, grad_output):
        input, grid = ctx.saved_tensors
        grad_input, grad_grid = _GridSampleBackward.apply(grad_output, input, grid)
        return grad_input, grad_grid


class _GridSampleBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, grad_output, input, grid):
        ctx.save_for_backward(grid)
        return torch.ops.aten.grid_sampler_2d_backward(grad_output, input, grid, 0, 0, False, [True, True])

    @staticmethod
    def backward(ctx, grad2_grad_input, grad2_grad_grid):
        (grid,) = ctx.saved_tensors
        grad2_grad_output = GridSampleTwice.apply(grad2_grad_input, grid) if ctx.needs_input_grad[0] else None
        return grad2_grad_output, None, None


def grid_sample_patch(gradfix_module: types.ModuleType) -> list:
    """Route ``gradfix_module.grid_sample(input, grid)`` through :class:`GridSampleTwice`."""
    return [(gradfix_module, "grid_sample", GridSampleTwice.apply)]


def custom_op_fallback_patch(op_modules: list) -> list:
    """Make each op module's ``_init()`` report "no plugin" when building its CUDA extension fails.

    Upstream then uses its own reference implementation of the op (slower, same result) instead
    of crashing.
    """
    def guarded(original, name):
        def _init():
            try:
                return original()
            except Exception as err:  # compiler/toolkit mismatch: any build failure means "use the reference op"
                import warnings

                warnings.warn(f"{name}: CUDA extension failed to build ({type(err).__name__}: {err}); "
                              f"using upstream's reference implementation")
                return False
        return _init

    return [(module, "_init", guarded(module._init, module.__name__)) for module in op_modules]


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
