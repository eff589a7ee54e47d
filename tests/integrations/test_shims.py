"""The generic shims of integrations/shims.py, against torch's own results."""
import types
import warnings

import pytest
import torch
import torch.nn.functional as F

from diffaug_noise.integrations.patching import Wrap, patched_attributes
from diffaug_noise.integrations.shims import (
    GridSampleTwice,
    custom_op_fallback_patch,
    float_adam_betas_patch,
    registered_extension_patch,
)


def _grid(batch, size, seed):
    g = torch.Generator().manual_seed(seed)
    # rotations, shifts, shears
    theta = torch.eye(2, 3).repeat(batch, 1, 1) + 0.2 * torch.randn(batch, 2, 3, generator=g)
    return F.affine_grid(theta, [batch, 3, size, size], align_corners=False)


def _r1(sample, x, weight):
    """R1 through a sampling op: ||d/dx sum(w * sample(x)^2)||^2, then its gradient w.r.t. x and w."""
    y = sample(x)
    (g,) = torch.autograd.grad((weight * y.square()).sum(), x, create_graph=True)
    penalty = g.square().sum()
    return penalty, torch.autograd.grad(penalty, [x, weight])


def test_grid_sample_twice_matches_torch_in_value_first_and_second_derivative():
    """Reference: torch's grid_sample on the CPU, which has a double backward there (not on CUDA)."""
    grid = _grid(3, 9, seed=0)
    x = torch.randn(3, 3, 9, 9, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 3, 9, 9, dtype=torch.float64, requires_grad=True)
    grid = grid.double()
    ours = _r1(lambda v: GridSampleTwice.apply(v, grid), x, weight)
    reference = _r1(lambda v: F.grid_sample(v, grid, mode="bilinear", padding_mode="zeros", align_corners=False), x,
                    weight)
    assert torch.allclose(ours[0], reference[0], rtol=1e-10)
    for a, b in zip(ours[1], reference[1]):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)


def test_grid_sample_twice_gradcheck():
    grid = _grid(2, 5, seed=1).double()
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: GridSampleTwice.apply(v, grid), (x,))
    assert torch.autograd.gradgradcheck(lambda v: GridSampleTwice.apply(v, grid), (x,))


def test_custom_op_fallback_reports_no_plugin_only_when_the_build_fails():
    def broken():
        raise ModuleNotFoundError("No module named 'bias_act_plugin'")

    failing = types.ModuleType("ops.bias_act")
    failing._init = broken
    working = types.ModuleType("ops.upfirdn2d")
    working._init = lambda: True
    with patched_attributes(custom_op_fallback_patch([failing, working])):
        with pytest.warns(UserWarning, match="ops.bias_act: CUDA extension failed to build .*reference implementation"):
            assert failing._init() is False
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert working._init() is True
    assert failing._init is broken  # restored


GET_PLUGIN = '''
import importlib, torch.utils.cpp_extension

def get_plugin(module_name, sources, **build_kwargs):   # upstream's torch_utils/custom_ops.py, reduced
    torch.utils.cpp_extension.load(name=module_name, sources=sources, **build_kwargs)
    return importlib.import_module(module_name)
'''


def test_a_built_but_unregistered_extension_loads_with_the_shim(monkeypatch):
    import sys

    import torch.utils.cpp_extension

    built = types.ModuleType("fake_op_plugin")  # what load() returns on current torch: built, not in sys.modules
    monkeypatch.setattr(torch.utils.cpp_extension, "load", lambda name, *a, **k: built)
    custom_ops = types.ModuleType("custom_ops")
    exec(GET_PLUGIN, custom_ops.__dict__)
    monkeypatch.delitem(sys.modules, "fake_op_plugin", raising=False)
    with pytest.raises(ModuleNotFoundError, match="No module named 'fake_op_plugin'"):
        custom_ops.get_plugin("fake_op_plugin", sources=["op.cu"])
    with patched_attributes(registered_extension_patch()):
        assert custom_ops.get_plugin("fake_op_plugin", sources=["op.cu"]) is built
    sys.modules.pop("fake_op_plugin", None)
    assert torch.utils.cpp_extension.load("x") is built  # the patch is undone


def test_a_failing_build_is_tried_once_and_warned_once_in_one_line():
    attempts = []
    op = types.ModuleType("torch_utils.ops.upfirdn2d")

    def _init():  # stylegan2-ada's upfirdn2d: catches the failure, warns a traceback, never sets _inited
        attempts.append(1)
        warnings.warn("Failed to build CUDA kernels for upfirdn2d. Falling back to slow reference implementation. "
                      "Details:\n\nTraceback (most recent call last):\n  ...\nModuleNotFoundError: No module named "
                      "'upfirdn2d_plugin'")
        return False

    op._init = _init
    with patched_attributes(custom_op_fallback_patch([op])):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert not any(op._init() for _ in range(100))
    assert len(attempts) == 1 and len(caught) == 1
    message = str(caught[0].message)
    assert "\n" not in message and "No module named 'upfirdn2d_plugin'" in message
    assert "reference implementation" in message


def test_plain_conv2d_computes_no_weight_gradient_in_the_r1_pass():
    """Why the conv2d_gradfix fallback stays torch's F.conv2d: upstream's custom op existed to skip the weight
    gradient while R1 differentiates w.r.t. the images (``no_weight_gradients``); torch's autograd already asks
    ``convolution_backward`` for the input gradient alone there, so ``aten.convolution_backward`` in a shim would
    save nothing. If a torch release stops doing so, this fails and the shim is worth writing."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class OutputMasks(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.masks = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.convolution_backward.default:
                self.masks.append(list(args[-1]))  # [input, weight, bias] gradients asked for
            return func(*args, **(kwargs or {}))

    D = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.LeakyReLU(0.2), torch.nn.Conv2d(8, 1, 3))
    x = torch.randn(4, 3, 12, 12, requires_grad=True)
    with OutputMasks() as r1_pass:
        (g,) = torch.autograd.grad(D(x).sum(), [x], create_graph=True)
    assert r1_pass.masks == [[True, False, False]] * 2  # the first layer's input grad is needed too: x asks for it
    with OutputMasks() as penalty_pass:
        g.square().sum().backward()
    assert [True, True, True] in penalty_pass.masks  # the weights do get the penalty's gradient


def test_patches_are_undone_and_two_of_one_attribute_are_refused():
    """Each patch's value was made from the attribute as it then was: of two, the one set last would drop the other
    (float_adam_betas_patch and the resumable loop both wrap training_loop)."""
    loop = types.ModuleType("training_loop")
    loop.training_loop, loop.print = "upstream's", "builtin"
    with patched_attributes([(loop, "training_loop", "wrapped"), (loop, "added", 1)]):
        assert (loop.training_loop, loop.added) == ("wrapped", 1)
    assert loop.training_loop == "upstream's" and not hasattr(loop, "added")
    twice = [(loop, "training_loop", "float betas"), (loop, "print", "tick line"), (loop, "training_loop", "resumable")]
    with pytest.raises(ValueError, match=r"^two patches set training_loop.training_loop: .*make the later one a Wrap$"):
        with patched_attributes(twice):
            pass
    assert loop.training_loop == "upstream's"
    late_plain = [(loop, "training_loop", Wrap(lambda f: f"betas({f})")), (loop, "training_loop", "resumable")]
    with pytest.raises(ValueError, match="two patches set training_loop.training_loop"):
        with patched_attributes(late_plain):
            pass


def test_wrappers_of_one_attribute_compose_in_order_and_are_undone():
    """The resumable loop (a plain value) and float_adam_betas_patch (a Wrap) on StyleGAN3's one training_loop."""
    loop = types.ModuleType("training_loop")
    loop.training_loop = "upstream's"
    patches = [(loop, "training_loop", "resumable"), (loop, "training_loop", Wrap(lambda f: f"betas({f})")),
               (loop, "training_loop", Wrap(lambda f: f"timed({f})"))]
    with patched_attributes(patches):
        assert loop.training_loop == "timed(betas(resumable))"
    assert loop.training_loop == "upstream's"
    calls = []
    loop.training_loop = lambda **kw: calls.append(kw["G_opt_kwargs"]["betas"])
    with patched_attributes(float_adam_betas_patch(loop)):
        loop.training_loop(G_opt_kwargs={"betas": [0, 0.99]})
    assert calls == [[0.0, 0.99]] and all(isinstance(b, float) for b in calls[0])
