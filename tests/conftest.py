
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


__all__ = ["abar_reference", "linear_betas_reference"]


collect_ignore = ["standins"]  # stand-ins of upstream code, imported by the integration tests only
