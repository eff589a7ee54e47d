"""Compatibility shims: each makes unmodified upstream code run where it otherwise breaks.

Every shim is a function returning patches ``(object, name, value)`` for
:func:`~.patching.patched_attributes`, and its docstring names the upstream bug it works around.
They are opt-in (``shims=True``, CLI ``--shims``, the default of ``diffaug-noise run``); the
adapters choose which ones their upstream needs in their ``compat_patches(options)`` (the StyleGAN
skeleton's shared chain, then each adapter's ``shims(options)``).
"""
from __future__ import annotations

import functools
import importlib.util
import os
import sys
import types
import warnings

import torch
from torch import nn

from .patching import Wrap
from .spec import UpstreamError


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
            max_memory_allocated=lambda *a: 0, max_memory_reserved=lambda *a: 0,
                                          reset_peak_memory_stats=lambda *a: None,
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


def _cpu_sync_device(original):
    def init_multiprocessing(rank, sync_device):
        if sync_device is not None and torch.device(sync_device).type == "cuda":
            sync_device = torch.device("cpu")  # gloo all-reduces CPU tensors
        return original(rank=rank, sync_device=sync_device)
    return init_multiprocessing


def cpu_stats_sync_patch(stats_module: types.ModuleType) -> list:
    """Let upstream's ``training_stats`` sync its statistics across CPU ranks; none if CUDA is there.

    Every upstream's ``train.py:subprocess_fn`` sets ``sync_device = torch.device('cuda', rank)`` whenever
    there is more than one process, so two CPU ranks (``torchrun``, gloo) die at the first tick's
    ``training_stats._sync`` ("Found no NVIDIA driver on your system"). Without CUDA the sync device is
    the CPU. A :class:`~.patching.Wrap` of ``init_multiprocessing``.
    """
    if torch.cuda.is_available():
        return []
    return [(stats_module, "init_multiprocessing", Wrap(_cpu_sync_device))]


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


def float_adam_betas_patch(loop_module: types.ModuleType) -> list:
    """Give ``loop_module.training_loop`` its Adam betas as floats.

    projected-gan's and stylegan3's ``train.py`` set ``betas=[0, 0.99]``; torch >= 2 rejects an int beside
    a float ("betas must be either both floats or both Tensors"), so upstream as released stops when it
    builds an optimiser without lazy regularisation, whose rescaling makes floats (G's in projected-gan
    and in stylegan3's ``stylegan3-t/-r`` configs). Seen on an H200 with torch 2.11. The same numbers as
    floats mean the same on every torch. A :class:`~.patching.Wrap`, so it composes with the resumable loop.
    """
    def wrap(original):
        @functools.wraps(original)
        def training_loop(*args, **kwargs):
            for name in ("G_opt_kwargs", "D_opt_kwargs"):
                opt_kwargs = kwargs.get(name)
                if opt_kwargs is not None and "betas" in opt_kwargs:
                    kwargs[name] = type(opt_kwargs)(opt_kwargs, betas=[float(b) for b in opt_kwargs["betas"]])
            return original(*args, **kwargs)
        return training_loop

    return [(loop_module, "training_loop", Wrap(wrap))]


def registered_extension_patch() -> list:
    """Register the module ``torch.utils.cpp_extension.load`` returns under its name, so it imports.

    Upstream's ``torch_utils/custom_ops.py:get_plugin`` (all three codebases) discards what ``load()``
    returns and then calls ``importlib.import_module(module_name)``. On current torch the built
    extension is not registered in ``sys.modules`` under that name, so the import fails with
    "No module named 'bias_act_plugin'" although nvcc, g++ and the link succeeded (seen on an H200
    with torch 2.11 / CUDA 13): every run silently used the slow reference ops. With this patch
    ``load()`` also puts its module into ``sys.modules``, and upstream's import finds it.
    """
    import torch.utils.cpp_extension as cpp_extension

    original = cpp_extension.load

    def load(name, *args, **kwargs):
        module = original(name, *args, **kwargs)
        if module is not None and name not in sys.modules:
            sys.modules[name] = module
        return module

    return [(cpp_extension, "load", load)]


def custom_op_fallback_patch(op_modules: list) -> list:
    """Make each op module's ``_init()`` try its CUDA build once; on failure one warning and the reference op.

    projected-gan's ``_init`` raises when the extension fails to build (a crash); stylegan2-ada's and
    InsGen's ``upfirdn2d._init`` catch the failure but never set ``_inited``, so they rebuild and
    print a traceback on *every* call (over 4,000 tracebacks and 68 s of "maintenance" in 12 kimg,
    seen on an H200). Here the first call's result is kept: on failure one line is warned (the
    build error's last line) and upstream's reference implementation (slower, same result) serves
    the rest of the run.
    """
    def guarded(original, name):
        result = []  # the first call's outcome, then reused

        def _init():
            if not result:
                with warnings.catch_warnings(record=True) as caught:  # upstream's own multi-line warning
                    warnings.simplefilter("always")
                    try:
                        ok = bool(original())
                        reason = str(caught[-1].message).strip().splitlines()[-1] if caught and not ok else ""
                    # compiler/toolkit mismatch: any build failure means "use the reference op"
                    except Exception as err:
                        ok, reason = False, f"{type(err).__name__}: {err}"
                if not ok:
                    warnings.warn(f"{name}: CUDA extension failed to build ({reason or 'no plugin'}); "
                                  f"using upstream's reference implementation for the rest of the run")
                result.append(ok)
            return result[0]
        return _init

    return [(module, "_init", guarded(module._init, module.__name__)) for module in op_modules]


def _efficientnet_layers(model):
    """Upstream's ``_make_efficientnet`` for timm >= 0.6, whose EfficientNet has no ``act1`` (bn1 applies it)."""
    pretrained = nn.Module()
    stem = [model.conv_stem, model.bn1] + ([model.act1] if hasattr(model, "act1") else [])
    pretrained.layer0 = nn.Sequential(*stem, *model.blocks[0:2])
    pretrained.layer1 = nn.Sequential(*model.blocks[2:3])
    pretrained.layer2 = nn.Sequential(*model.blocks[3:5])
    pretrained.layer3 = nn.Sequential(*model.blocks[5:9])
    return pretrained


class BackboneTimm:
    """``timm`` as ``pg_modules.projector`` sees it: ``create_model`` honours our backbone settings.

    ``pretrained=False`` gives a random backbone (mechanics tests only); a local weights file is
    loaded instead of the hub download; without either, the hub is tried and a failure says what to do.
    """

    def __init__(self, timm, pretrained: bool = True, weights: str | None = None):
        self._timm, self.pretrained, self.weights = timm, pretrained, weights  # timm: the module upstream imported

    def create_model(self, name, pretrained=False, **kwargs):
        if not (pretrained and self.pretrained):
            return self._timm.create_model(name, pretrained=False, **kwargs)
        if self.weights is not None:
            model = self._timm.create_model(name, pretrained=False, **kwargs)
            state = torch.load(self.weights, map_location="cpu", weights_only=True)
            model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
            return model
        try:
            return self._timm.create_model(name, pretrained=True, **kwargs)
        except Exception as err:  # hub unreachable, no cache: the message says how to proceed offline
            raise UpstreamError(f"cannot get the pretrained {name} weights from timm's hub ({type(err).__name__}: "
                                f"{err}). Offline: download them on a machine with internet "
                                f"(timm.create_model({name!r}, pretrained=True); torch.save(model.state_dict(), "
                                "'lite0.pth')) and pass --backbone-weights lite0.pth; --no-pretrained gives a random "
                                "backbone for mechanics tests only") from err

    def __getattr__(self, name):
        return getattr(self._timm, name)


def timm_backbone_patch(projector_module: types.ModuleType, pretrained: bool = True,
                        weights: str | None = None) -> list:
    """Patches for projected-gan's ``pg_modules.projector`` on timm >= 0.6 and on offline machines.

    - ``_make_efficientnet`` reads ``model.act1``, which timm >= 0.6 removed (``bn1`` is a
      ``BatchNormAct2d``): our builder takes the same layers without it.
    - the backbone comes from timm's hub: :class:`BackboneTimm` takes a local file (``weights``), or a
      random backbone (``pretrained=False``, mechanics tests only), or explains the failure.
    """
    return [(projector_module, "_make_efficientnet", _efficientnet_layers),
            (projector_module, "timm", BackboneTimm(projector_module.timm, pretrained, weights))]


def _plain_conv2d(input) -> bool:
    """``conv2d_gradfix._should_use_custom_op``: never (torch's own conv2d instead)."""
    return False


def plain_conv2d_patch(gradfix_module: types.ModuleType) -> list:
    """Make StyleGAN3-era ``torch_utils.ops.conv2d_gradfix`` use ``F.conv2d``.

    Its custom op (stylegan3 and its forks: projected-gan, R3GAN) has no torch-version check and calls
    ``torch._C._jit_get_operation('aten::cudnn_convolution_backward_weight')``, which is a tuple on
    torch >= 1.11: "'tuple' object is not callable" at the first D backward on CUDA. ``F.conv2d`` is
    twice differentiable, so R1 through it is exact; the op was a speed path only.
    """
    return [(gradfix_module, "_should_use_custom_op", _plain_conv2d)]


def pkg_resources_patch() -> list:
    """A stand-in ``pkg_resources`` (``parse_version`` only) where setuptools no longer ships one.

    stylegan3's and R3GAN's ``torch_utils/ops/conv2d_gradfix.py`` and ``grid_sample_gradfix.py`` do
    ``from pkg_resources import parse_version``; setuptools removed ``pkg_resources`` (84.2 has none:
    "No module named 'pkg_resources'"), so as released they do not import on a current install.
    ``parse_version`` is ``packaging.version.parse``, which is what it was. Applied before upstream is
    imported (an :attr:`~.spec.Upstream.import_shims` entry); none where ``pkg_resources`` exists.
    """
    if importlib.util.find_spec("pkg_resources") is not None:
        return []
    try:
        from packaging.version import parse
    except ImportError:  # torch vendors packaging
        from torch._vendor.packaging.version import parse
    module = types.ModuleType("pkg_resources", "diffaug-noise's stand-in: parse_version only "
                                               "(shims.pkg_resources_patch)")
    module.parse_version = parse
    return [(sys.modules, "pkg_resources", module)]
