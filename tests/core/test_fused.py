"""The fused Triton forward: run on the CPU through Triton's interpreter (any machine), and on CUDA.

The interpreter must be switched on before Triton compiles anything, so the kernel runs in a
subprocess that saves its inputs and outputs; the checks here recompute ``y`` in float64 from
them and test ``eps`` for N(0, 1) with scipy.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from scipy import stats

import diffaug_noise as dn
from helpers import chi_square_pvalue

triton = pytest.importorskip("triton")

INTERPRETED = textwrap.dedent("""
    import sys, torch
    from diffaug_noise import fused, DiffusionNoise
    out, = sys.argv[1:]
    results = {}
    # Programs take 2048 elements: below that many per t each spans several t; "wide" and "wide channel" have
    # programs within one t (coefficients read once) and programs across two.
    for name, shape, per_channel, dtype in [("sample", (6, 3, 20, 20), False, torch.float32),
                                            ("channel", (4, 5, 7, 9), True, torch.float32),
                                            ("half", (5, 2, 33, 7), False, torch.float16),
                                            ("wide", (3, 3, 40, 40), False, torch.float32),
                                            ("wide channel", (2, 3, 50, 50), True, torch.bfloat16)]:
        noise = DiffusionNoise(t_min=10, t_max=200, p=0.7, sigma=0.5, per_channel=per_channel)
        x = torch.randn(shape).to(dtype)
        t = noise.sample_t(shape[:2] if per_channel else shape[:1])
        inner = x[0].numel() // (shape[1] if per_channel else 1)
        seed = torch.tensor([0.25, 0.5], dtype=torch.float64)
        eps = torch.full(shape, float("nan"))  # poisoned: every element must be written
        y = fused.launch(x, t, noise.coefficients32, inner, seed, eps_out=eps)
        again = fused.launch(x, t, noise.coefficients32, inner, seed)
        other = fused.launch(x, t, noise.coefficients32, inner, torch.tensor([0.75, 0.5], dtype=torch.float64))
        low_bits = fused.launch(x, t, noise.coefficients32, inner,
                                torch.tensor([0.25, 0.5 + 2**-30], dtype=torch.float64))
        xg = x.float().requires_grad_()
        fused.fused_forward(xg, t, noise.coefficients32, inner, seed).sum().backward()
        # R1 differentiates twice: d/dx sum(d/dx sum(y^2)) = d/dx sum(2 a y) = 2 a^2 per element.
        x2 = x.float().requires_grad_()
        g, = torch.autograd.grad(fused.fused_forward(x2, t, noise.coefficients32, inner, seed).square().sum(), x2,
                                 create_graph=True)
        second, = torch.autograd.grad(g.sum(), x2)
        results[name] = dict(x=x, t=t, eps=eps, y=y, again=again, other=other, low_bits=low_bits, grad=xg.grad,
                             second=second, table=noise.coefficients64, per_channel=per_channel)
    torch.save(results, out)
""")


@pytest.fixture(scope="module")
def interpreted(tmp_path_factory):
    out = tmp_path_factory.mktemp("fused") / "kernel.pt"
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "-c", INTERPRETED, str(out)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out)


def _coefficients(case):
    t, table, x = case["t"], case["table"], case["x"]
    view = t.shape + (1,) * (x.ndim - t.ndim)
    return table[0, t].view(view), table[1, t].view(view)


CASES = ["sample", "channel", "half", "wide", "wide channel"]


@pytest.mark.parametrize("name", CASES)
def test_kernel_output_is_the_transform_of_its_own_eps(interpreted, name):
    case = interpreted[name]
    a, b = _coefficients(case)
    reference = a * case["x"].double() + b * case["eps"].double()  # float64, independent of the kernel
    assert not torch.isnan(case["eps"]).any()
    tol = {torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}[case["x"].dtype]  # one rounding to x's dtype
    assert torch.allclose(case["y"].double(), reference, rtol=tol, atol=tol)
    assert case["y"].dtype == case["x"].dtype


@pytest.mark.parametrize("name", CASES)
def test_kernel_eps_is_standard_normal_and_seeded(interpreted, name):
    case = interpreted[name]
    eps = case["eps"].flatten().double().numpy()
    assert stats.kstest(eps, "norm").pvalue > 1e-4
    # Neighbouring elements are independent draws (Philox counter = flat index).
    assert abs(stats.pearsonr(eps[:-1], eps[1:]).statistic) < 6 / len(eps) ** 0.5
    # ... and so are the four outputs of one Philox call, which feed elements 512 apart.
    assert abs(stats.pearsonr(eps[:-512], eps[512:]).statistic) < 6 / len(eps) ** 0.5
    assert torch.equal(case["y"], case["again"])  # same seed, same output
    noised = case["t"].repeat_interleave(case["x"][0].numel() // (case["t"][0].numel())) > 0
    assert not torch.equal(case["y"].flatten()[noised], case["other"].flatten()[noised])
    # The seed's low 32 bits matter: 2**-30 in the second uniform is below the old 31-bit seed's resolution.
    assert not torch.equal(case["y"].flatten()[noised], case["low_bits"].flatten()[noised])


def test_64_bit_seeds_do_not_collide_where_31_bit_seeds_do():
    """Over 200,000 forward calls the old seed (a uniform scaled to 31 bits) repeats ~9 times; the 64-bit one never."""
    from diffaug_noise import fused

    u = torch.rand(200_000, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    old = (u[:, 0] * 2147483647.0).long()
    assert len(old) - len(torch.unique(old)) >= 2  # expected n^2 / 2^32 = 9.3 collisions
    seeds = {fused.philox_seed(pair) for pair in u}
    assert len(seeds) == len(u)
    assert max(seeds) >= 2**62  # the high word is used


OPERATOR = textwrap.dedent("""
    import json, sys, torch
    from diffaug_noise import fused, DiffusionNoise
    noise = DiffusionNoise(t_min=10, t_max=200, p=0.7)
    x = torch.randn(4, 3, 8, 8)
    t = noise.sample_t(4)
    seed = torch.tensor([0.25, 0.5], dtype=torch.float64)
    args = (x, t, noise.coefficients32, x[0].numel(), seed)
    checks = torch.library.opcheck(fused.diffuse, args)  # schema, fake tensors, autograd registration, AOT dispatch
    D = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(144, 1))
    graphs = []

    def recording(gm, example_inputs):  # a backend that keeps the graphs dynamo hands it
        graphs.append(str(gm.graph))
        return gm.forward

    def d_of_noised(x):
        return D(fused.fused_forward(x, t, noise.coefficients32, x[0].numel(), seed))

    xe, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
    eager = d_of_noised(xe)
    eager.sum().backward()
    compiled = torch.compile(d_of_noised, backend=recording, fullgraph=True)(xc)  # fullgraph: a break would raise
    compiled.sum().backward()
    aot = torch.compile(d_of_noised, backend="aot_eager", fullgraph=True)(x)
    print(json.dumps(dict(checks=checks, graphs=len(graphs), op_in_graph="diffaug_noise.diffuse" in graphs[0],
                          same=torch.equal(eager, compiled) and torch.equal(eager, aot),
                          same_grad=torch.equal(xe.grad, xc.grad))))
""")


def test_the_kernel_is_an_operator_that_compiles_without_a_graph_break():
    """On the CPU through Triton's interpreter: opcheck passes, D(noise(x)) is one graph holding the operator,
    and the compiled function gives the eager output and gradient."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "-c", OPERATOR], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result["checks"].values()) == {"SUCCESS"}, result["checks"]
    assert result["graphs"] == 1 and result["op_in_graph"]
    assert result["same"] and result["same_grad"]


@pytest.mark.parametrize("name", ["sample", "channel", "wide"])
def test_kernel_gradient_is_sqrt_abar_and_differentiates_twice(interpreted, name):
    case = interpreted[name]
    a, _ = _coefficients(case)
    assert torch.allclose(case["grad"].double(), a.expand_as(case["grad"]), rtol=1e-6)
    assert torch.allclose(case["second"].double(), 2 * a.square().expand_as(case["second"]), rtol=1e-5)


def test_cpu_never_takes_the_fused_path():
    noise = dn.DiffusionNoise(p=0.5)
    x = torch.randn(8, 3, 4, 4)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    y, t = noise(x, generator=g1)
    assert torch.equal(y, noise.apply_transform(x, *noise.generate_parameters(x, generator=g2)))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_fused_forward_has_the_law_of_the_transform(dtype):
    noise = dn.DiffusionNoise(t_min=10, t_max=100, p=0.6, sigma=1.0, clean_prob=0.2).cuda()
    x = torch.randn(4096, 2, 8, 8, device="cuda").to(dtype)
    y, t = noise(x)
    a, b = noise.coefficients64[:, t].view(2, -1, 1, 1, 1)
    eps = (y.double() - a * x.double()) / b  # eps recovered from the output
    loud = (b > 0.2).expand_as(eps)  # where the noise dwarfs float16/bfloat16 rounding of y
    eps = eps[loud].cpu().numpy()
    if dtype == torch.float32:
        assert stats.kstest(eps, "norm").pvalue > 1e-4
    assert abs(eps.mean()) < 0.02 and abs(eps.std() - 1) < 0.02
    clean = t == 0  # about a fifth of the batch: passed through exactly
    assert torch.equal(y[clean], x[clean])


@pytest.mark.gpu
def test_cuda_fused_and_unfused_agree_in_law_and_gradient():
    noise = dn.DiffusionNoise(p=0.4).cuda()
    x = torch.randn(2048, 3, 8, 8, device="cuda", requires_grad=True)
    y, t = noise(x)
    y.sum().backward()
    assert torch.allclose(x.grad, noise.coefficients64[0, t].float().view(-1, 1, 1, 1).expand_as(x))
    noise.fused = False
    g1, g2 = torch.Generator("cuda").manual_seed(5), torch.Generator("cuda").manual_seed(5)
    y_unfused, _ = noise(x.detach(), generator=g1)
    replayed = noise.apply_transform(x.detach(), *noise.generate_parameters(x.detach(), generator=g2))
    assert torch.equal(y_unfused, replayed)
    # Same law: one coordinate of one fixed sample, noised 20,000 times by each path (iid draws).
    one = torch.randn(1, 3, 8, 8, device="cuda").expand(20_000, -1, -1, -1).contiguous()
    y_torch = noise(one)[0][:, 0, 0, 0]
    noise.fused = True
    y_fused = noise(one)[0][:, 0, 0, 0]
    assert stats.ks_2samp(y_fused.cpu().numpy(), y_torch.cpu().numpy()).pvalue > 1e-4


@pytest.mark.gpu
@pytest.mark.parametrize("per_channel", [False, True])
def test_cuda_fused_forward_draws_t_from_its_law(per_channel):
    noise = dn.DiffusionNoise(t_min=10, t_max=60, p=0.5, clean_prob=0.1, per_channel=per_channel).cuda()
    x = torch.randn(20_000, 4, 2, 2, device="cuda")
    ts = torch.cat([noise(x)[1].flatten() for _ in range(5)]).cpu()
    assert chi_square_pvalue(ts, noise.t_distribution().tolist()) > 1e-4


@pytest.mark.gpu
def test_cuda_fused_forward_reproducible_under_manual_seed():
    noise = dn.DiffusionNoise(p=0.4).cuda()
    x = torch.randn(64, 3, 32, 32, device="cuda")
    torch.manual_seed(0)
    first = noise(x)
    torch.manual_seed(0)
    second = noise(x)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert json.dumps(noise.config())  # the runtime option stays out of the saved settings
    assert "fused" not in noise.config()
