"""Fixtures every test shares: a fixed seed, GPU tests skipped without CUDA, recording of noise calls."""
import pytest
import torch


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


collect_ignore = ["standins"]  # stand-ins of upstream code, imported by the integration tests only
