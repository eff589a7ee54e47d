"""DiffusionNoise under torch.compile (no graph breaks, gradients flow) and torch.autocast (dtypes kept, law kept)."""
import pytest
import torch
from scipy import stats

import diffaug_noise as dn
from diffaug_noise.benchmark import capture_cuda_graph


def _model():
    torch.manual_seed(0)
    noise = dn.DiffusionNoise(sigma=0.5, p=0.3)
    D = dn.TimestepConditionedDiscriminator(torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LeakyReLU(0.2)),
                                            feature_dim=16, embed_dim=8)
    return noise, D


def test_noise_then_D_compiles_as_one_graph_and_backpropagates():
    noise, D = _model()
    f = lambda x: D(*noise(x))  # noqa: E731
    x = torch.randn(32, 8, requires_grad=True)
    explained = torch._dynamo.explain(f)(x)
    assert explained.graph_count == 1 and explained.graph_break_count == 0, explained.break_reasons
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    out.sum().backward()
    assert out.shape == (32, 1) and x.grad is not None and torch.isfinite(x.grad).all()
    torch.manual_seed(3)
    y_eager, t_eager = noise(x.detach())
    torch.manual_seed(3)
    y_compiled, t_compiled = torch.compile(noise, fullgraph=True, backend="aot_eager")(x.detach())
    assert torch.equal(t_eager, t_compiled)
    torch.testing.assert_close(y_eager, y_compiled)


def test_noise_compiles_with_a_dynamic_batch():
    # A recompiled step marks the batch dynamic; torch.rand(..., generator=None) then failed to trace (symbolic size
    # in the generator overload), on the CPU path and in the fused CUDA path alike (found on an H200, 2026-12-04).
    noise = dn.DiffusionNoise(sigma=0.5, p=0.5)
    compiled = torch.compile(noise, dynamic=True, fullgraph=True, backend="aot_eager")
    for batch in (4, 6):
        y, t = compiled(torch.zeros(batch, 3, 4, 4))
        assert y.shape == (batch, 3, 4, 4) and t.shape == (batch,) and bool(((t >= 1) & (t <= noise.T)).all())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_keeps_dtypes_and_the_law_of_y(dtype):
    noise = dn.DiffusionNoise(sigma=0.5, p=0.2)
    x32 = torch.full((20_000, 4), 0.7)
    with torch.autocast("cpu", dtype=dtype):
        y32, t32 = noise(x32, generator=torch.Generator().manual_seed(0))
        y_low, t_low = noise(x32.to(dtype), generator=torch.Generator().manual_seed(1))
    assert y32.dtype == torch.float32 and y_low.dtype == dtype  # the input's dtype, whatever autocast does
    assert t32.dtype == t_low.dtype == torch.int64
    assert noise.sqrt_abar.dtype == noise.t_cdf.dtype == torch.float64
    ks = stats.ks_2samp(y32.flatten().numpy(), y_low.float().flatten().numpy())
    assert ks.pvalue > 1e-3, ks


def _law_of_eps_holds(noise, x, y, t):
    a, b = noise.coefficients64[:, t].view((2,) + t.shape + (1,) * (x.ndim - t.ndim))
    noised = (b > 0).expand_as(x)
    eps = ((y.double() - a * x.double()) / b.clamp_min(1e-12))[noised]
    return abs(float(eps.mean())) < 0.03 and abs(float(eps.std()) - 1) < 0.03


@pytest.mark.gpu
def test_cuda_fused_noise_then_D_compiles_as_one_graph_with_the_operator():
    noise, D = _model()
    noise, D = noise.cuda(), D.cuda()
    graphs = []

    def recording(gm, example_inputs):
        graphs.append(str(gm.graph))
        return gm.forward

    x = torch.randn(4096, 8, device="cuda", requires_grad=True)
    out = torch.compile(lambda x: D(*noise(x)), backend=recording, fullgraph=True)(x)
    out.sum().backward()
    assert len(graphs) == 1 and "diffaug_noise.diffuse" in graphs[0]
    assert torch.isfinite(x.grad).all()
    y, t = torch.compile(noise, fullgraph=True)(x.detach())  # inductor
    assert _law_of_eps_holds(noise, x.detach(), y, t)


@pytest.mark.gpu
def test_cuda_graph_replays_the_fused_noise_with_new_draws():
    noise = dn.DiffusionNoise(p=0.5).cuda()
    x = torch.randn(512, 3, 16, 16, device="cuda")
    replay, (y, t) = capture_cuda_graph(lambda: noise(x))
    replays = []
    for _ in range(2):
        replay()
        replays.append((y.clone(), t.clone()))
    assert not torch.equal(replays[0][1], replays[1][1]) and not torch.equal(replays[0][0], replays[1][0])
    assert all(_law_of_eps_holds(noise, x, y_, t_) for y_, t_ in replays)


@pytest.mark.gpu
def test_reduce_overhead_compile_replays_the_fused_noise_with_new_draws():
    """What a user reaches for at launch-bound sizes: torch.compile's CUDA graphs (cudagraph trees) around the
    forward, the kernel inside as the operator. Every call must still draw new t and eps."""
    noise = dn.DiffusionNoise(p=0.5).cuda()
    x = torch.randn(512, 3, 16, 16, device="cuda")
    forward = torch.compile(noise, mode="reduce-overhead", fullgraph=True)
    draws = []
    for _ in range(5):  # warm-up, recording, then replays of the captured graph (which rewrite their outputs)
        y, t = forward(x)
        draws.append((y.clone(), t.clone()))
    assert all(not torch.equal(a[1], b[1]) and not torch.equal(a[0], b[0]) for a, b in zip(draws, draws[1:]))
    assert all(_law_of_eps_holds(noise, x, y, t) for y, t in draws)
