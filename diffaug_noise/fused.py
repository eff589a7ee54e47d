r"""The forward diffusion as one Triton kernel: gather, draw ``eps`` and combine in a single pass.

Per element ``i`` of a contiguous ``x`` with timestep ``t[i // inner]``:

.. math::
    y_i = a_{t}\, x_i + b_{t}\, \epsilon_i, \qquad a_t = \sqrt{\bar\alpha_t},\ b_t = \sigma\sqrt{1-\bar\alpha_t},
    \qquad \epsilon_i = \text{Box-Muller}(\mathrm{Philox4x32}(\text{seed}, c(i)))_{k(i)} \sim N(0, 1),

where each Philox call (counter ``c``) feeds four elements ``BLOCK`` apart, one output ``k`` each,
computed in float32 and rounded once to ``x``'s dtype. ``eps`` never touches memory, so the pass
moves one read of ``x`` and one write of ``y`` (plus the small ``t`` and table reads, which stay in
cache). A program whose ``4 · BLOCK`` elements share one ``t`` (most, at image sizes) reads its
coefficients once; one that spans two gathers them per element. The 64-bit Philox seed is made by the kernel from two
uniforms ``u_0, u_1`` in [0, 1) drawn by torch on the device (in the same call as the uniforms that pick ``t``):
``seed = floor(2^32 u_0) · 2^32 + floor(2^32 u_1)`` (:func:`philox_seed`), so there is no host
round-trip, no extra launch, and ``torch.manual_seed`` still makes runs reproducible. With 64 bits
two calls share a stream with probability ~n²/2⁶⁵ over ``n`` calls (a 31-bit seed reached 50 % by
~55,000 calls; a long StyleGAN2 run makes millions).

:class:`~diffaug_noise.DiffusionNoise` calls :func:`fused_forward` on CUDA by itself; everything
else (CPU, float64, non-contiguous ``x``, no Triton) takes the unfused torch path. Under
``torch.compile`` the kernel is the registered operator ``torch.ops.diffaug_noise.diffuse``
(:func:`diffuse`, with a fake implementation), so ``torch.compile(lambda x: D(*noise(x)),
fullgraph=True)`` has no graph break; nothing in the forward reads back to the host, so a CUDA
graph can capture it (each replay draws new uniforms, hence new ``t`` and ``eps``). Importing this
module imports Triton; :func:`available` tells whether that works.

Example (CUDA only, so not run as a doctest)::

    seed = torch.rand(2, dtype=torch.float64, device="cuda")
    y = fused_forward(x, t, noise.coefficients32, inner=x[0].numel(), seed=seed)
"""
from __future__ import annotations

import torch

try:  # Triton ships with torch's CUDA wheels; without it the unfused path is used.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None

FUSED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_BLOCK = 512  # Philox counters per program: 2048 elements
_MAX_ELEMENTS = 2**31 - 4 * _BLOCK  # offsets are int32 inside the kernel


def available() -> bool:
    """Whether Triton imported, i.e. whether :func:`fused_forward` can run."""
    return triton is not None


if triton is not None:

    @triton.jit
    def _noise_kernel(
        x_ptr,  # input, contiguous
        y_ptr,  # output, like x
        eps_ptr,  # float32 copy of eps when WRITE_EPS (tests), else unused
        t_ptr,  # int64 timesteps, one per `inner` consecutive elements
        coef_ptr,  # float32 [2, t_max + 1]: sqrt(abar_t), sigma * sqrt(1 - abar_t)
        seed_ptr,  # float64 [2] uniforms in [0, 1), drawn on the device: the high and low 32 bits of the seed
        n_elements,  # x.numel()
        inner,  # elements per timestep: prod(x.shape[1:]), or prod(x.shape[2:]) per channel
        table_stride,  # coef_ptr row stride
        BLOCK: tl.constexpr,  # Philox counters per program; each gives 4 normals for 4 sub-blocks
        WRITE_EPS: tl.constexpr,  # also store eps (for tests)
    ):
        # One Philox4x32 call yields four normals (as curand's randn uses them all); sub-block k of
        # this program's 4 * BLOCK elements takes the k-th, so loads and stores stay contiguous.
        counters = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        high = (tl.load(seed_ptr) * 4294967296.0).to(tl.int64).to(tl.uint64)
        low = (tl.load(seed_ptr + 1) * 4294967296.0).to(tl.int64).to(tl.uint64)
        seed = (high << 32) | low
        eps0, eps1, eps2, eps3 = tl.randn4x(seed, counters)
        start = tl.program_id(0) * (4 * BLOCK)
        base = start + tl.arange(0, BLOCK)
        first, last = start // inner, (tl.minimum(start + 4 * BLOCK, n_elements) - 1) // inner
        if first == last:
            # All of this program's elements share one t (most programs, at image sizes): its coefficients
            # are read once, and no element pays a division and three gathers.
            t = tl.load(t_ptr + first)
            a, b = tl.load(coef_ptr + t), tl.load(coef_ptr + table_stride + t)
            _combine(x_ptr, y_ptr, eps_ptr, base, eps0, a, b, n_elements, WRITE_EPS)
            _combine(x_ptr, y_ptr, eps_ptr, base + BLOCK, eps1, a, b, n_elements, WRITE_EPS)
            _combine(x_ptr, y_ptr, eps_ptr, base + 2 * BLOCK, eps2, a, b, n_elements, WRITE_EPS)
            _combine(x_ptr, y_ptr, eps_ptr, base + 3 * BLOCK, eps3, a, b, n_elements, WRITE_EPS)
        else:
            _combine_gathered(x_ptr, y_ptr, eps_ptr, t_ptr, coef_ptr, base, eps0, n_elements, inner, table_stride,
                              WRITE_EPS)
            _combine_gathered(x_ptr, y_ptr, eps_ptr, t_ptr, coef_ptr, base + BLOCK, eps1, n_elements, inner,
                              table_stride, WRITE_EPS)
            _combine_gathered(x_ptr, y_ptr, eps_ptr, t_ptr, coef_ptr, base + 2 * BLOCK, eps2, n_elements, inner,
                              table_stride, WRITE_EPS)
            _combine_gathered(x_ptr, y_ptr, eps_ptr, t_ptr, coef_ptr, base + 3 * BLOCK, eps3, n_elements, inner,
                              table_stride, WRITE_EPS)

    @triton.jit
    def _combine(x_ptr, y_ptr, eps_ptr, offsets, eps, a, b, n_elements, WRITE_EPS: tl.constexpr):
        # y = a x + b eps at `offsets`; a and b are scalars or one value per offset.
        mask = offsets < n_elements
        x = tl.load(x_ptr + offsets, mask=mask).to(tl.float32)
        tl.store(y_ptr + offsets, (a * x + b * eps).to(y_ptr.dtype.element_ty), mask=mask)
        if WRITE_EPS:
            tl.store(eps_ptr + offsets, eps, mask=mask)

    @triton.jit
    def _combine_gathered(x_ptr, y_ptr, eps_ptr, t_ptr, coef_ptr, offsets, eps, n_elements, inner, table_stride,
                          WRITE_EPS: tl.constexpr):
        # _combine where the offsets span several t: each element gathers its own coefficients.
        mask = offsets < n_elements
        t = tl.load(t_ptr + offsets // inner, mask=mask, other=0)
        a = tl.load(coef_ptr + t, mask=mask)
        b = tl.load(coef_ptr + table_stride + t, mask=mask)
        _combine(x_ptr, y_ptr, eps_ptr, offsets, eps, a, b, n_elements, WRITE_EPS)


def philox_seed(u: torch.Tensor) -> int:
    """The 64-bit Philox seed the kernel makes from two uniforms ``u[0], u[1]`` in [0, 1) (for tests and replays).

    Example:
        >>> philox_seed(torch.tensor([0.5, 0.25], dtype=torch.float64)) == (2**31 << 32) | 2**30
        True
    """
    high, low = (int(v * 4294967296.0) for v in u.double().tolist())
    return (high << 32) | low


def supports(x: torch.Tensor) -> bool:
    """Whether the kernel handles ``x`` (float16/bfloat16/float32, contiguous, < 2**31 elements)."""
    return available() and x.dtype in FUSED_DTYPES and x.is_contiguous() and 0 < x.numel() < _MAX_ELEMENTS


def launch(x: torch.Tensor, t: torch.Tensor, table: torch.Tensor, inner: int, seed: torch.Tensor,
           eps_out: torch.Tensor | None = None) -> torch.Tensor:
    """Run the kernel on ``x`` (no autograd); also fill ``eps_out`` (float32, like ``x``) if given.

    ``seed`` is a float64 tensor ``[2]`` of uniform draws in [0, 1) (see :func:`philox_seed`).
    """
    y = torch.empty_like(x)
    grid = (triton.cdiv(x.numel(), 4 * _BLOCK),)
    _noise_kernel[grid](x, y, eps_out if eps_out is not None else y, t, table, seed, x.numel(), inner, table.stride(0),
                        BLOCK=_BLOCK, WRITE_EPS=eps_out is not None)
    return y


@torch.library.custom_op("diffaug_noise::diffuse", mutates_args=())
def diffuse(x: torch.Tensor, t: torch.Tensor, table: torch.Tensor, inner: int, seed: torch.Tensor) -> torch.Tensor:
    """The kernel as a ``torch.library`` operator: ``y = a_t x + b_t eps``, with ``dy/dx = a_t``.

    ``torch.compile`` keeps it as one node of its graph (its shape comes from the fake
    implementation below, without running it), and autograd differentiates it in ``x`` only.
    """
    return launch(x, t, table, inner, seed)


@diffuse.register_fake
def _diffuse_fake(x, t, table, inner, seed):
    return torch.empty_like(x)


def _grad_x(grad_y: torch.Tensor, t: torch.Tensor, table: torch.Tensor, x_ndim: int) -> torch.Tensor:
    """``dL/dx = a_t dL/dy``, ``a_t`` broadcast over the elements that share ``t``."""
    return grad_y * table[0, t].to(grad_y.dtype).view(t.shape + (1,) * (x_ndim - t.ndim))


def _diffuse_setup_context(ctx, inputs, output):
    x, t, table, _, _ = inputs
    ctx.save_for_backward(t, table)
    ctx.x_ndim = x.ndim


def _diffuse_backward(ctx, grad_y):
    t, table = ctx.saved_tensors
    return _grad_x(grad_y, t, table, ctx.x_ndim), None, None, None, None


diffuse.register_autograd(_diffuse_backward, setup_context=_diffuse_setup_context)


class _EagerDiffuse(torch.autograd.Function):
    """The kernel differentiable in eager mode: the same maths as :func:`diffuse`, at a fraction of its
    host time (a ``torch.library`` operator's Python dispatch costs tens of microseconds per call)."""

    @staticmethod
    def forward(ctx, x, t, table, inner, seed):
        ctx.save_for_backward(t, table)
        ctx.x_ndim = x.ndim
        return launch(x, t, table, inner, seed)

    @staticmethod
    def backward(ctx, grad_y):
        t, table = ctx.saved_tensors
        return _grad_x(grad_y, t, table, ctx.x_ndim), None, None, None, None


def fused_forward(x: torch.Tensor, t: torch.Tensor, table: torch.Tensor, inner: int,
                  seed: torch.Tensor) -> torch.Tensor:
    """Noise ``x`` in one kernel; differentiable in ``x``. ``x`` must satisfy :func:`supports`.

    Traced by ``torch.compile``: the operator :func:`diffuse`. In eager mode the kernel is launched
    directly, through a ``torch.autograd.Function`` when a gradient is wanted: at launch-bound sizes
    the operator's dispatch would cost more than the kernel (on the dev machine's CPU, 43 µs per
    call against 6 µs for the Function, 2026-11-28).
    """
    t = t.contiguous()
    if torch.compiler.is_compiling():
        return diffuse(x, t, table, inner, seed)
    if x.requires_grad and torch.is_grad_enabled():
        return _EagerDiffuse.apply(x, t, table, inner, seed)
    return launch(x, t, table, inner, seed)
