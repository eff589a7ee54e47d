
import pytest
import torch


def abar_reference(betas):
    """abar_0..abar_T by a plain float64 product, independent of the library."""
    out, prod = [1.0], 1.0
    for b in betas:
        prod *= 1.0 - float(b)
        out.append(prod)
    return out


def linear_betas_reference(T, start, end):
    return [start] if T == 1 else [start + (end - start) * i / (T - 1) for i in range(T)]


def fid_reference(a, b):
    """Fréchet distance of two float64 feature arrays [N, F] with scipy's sqrtm (np.cov: unbiased)."""
    import numpy as np
    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def forget_upstream(standin, module_roots):
    """Drop stand-in upstream modules from sys.modules and sys.path, so the next test imports afresh."""
    import sys

    for name in list(sys.modules):
        if name.split(".")[0] in module_roots:
            del sys.modules[name]
    while str(standin) in sys.path:
        sys.path.remove(str(standin))


@pytest.fixture
def noise_calls(monkeypatch):
    """Every DiffusionNoise forward as ``(x, y, t, x.requires_grad)`` and every controller observation."""
    import diffaug_noise as dn

    calls = {"noise": [], "observe": []}
    forward, observe = dn.DiffusionNoise.forward, dn.AdaptiveController.observe

    def noise_forward(self, x, generator=None):
        y, t = forward(self, x, generator)
        calls["noise"].append((x.detach().clone(), y.detach().clone(), t.clone(), x.requires_grad))
        return y, t

    def controller_observe(self, logits):
        calls["observe"].append(logits.detach().clone())
        return observe(self, logits)

    monkeypatch.setattr(dn.DiffusionNoise, "forward", noise_forward)
    monkeypatch.setattr(dn.AdaptiveController, "observe", controller_observe)
    return calls


__all__ = ["abar_reference", "fid_reference", "forget_upstream", "linear_betas_reference"]


collect_ignore = ["standins"]  # stand-ins of upstream code, imported by the integration tests only
