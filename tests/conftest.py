"""Fixtures every test shares: a fixed seed, GPU tests skipped without CUDA, recording of noise calls."""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP, as `import diffaug_noise` does: a
# test on 2 threads beside other jobs slows in proportion to the load instead of spinning (docs/performance.md)

import pytest  # noqa: E402
import torch  # noqa: E402


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

    def controller_observe(self, logits, fake_logits=None):
        calls["observe"].append(logits.detach().clone())
        return observe(self, logits, fake_logits)

    monkeypatch.setattr(dn.DiffusionNoise, "forward", noise_forward)
    monkeypatch.setattr(dn.AdaptiveController, "observe", controller_observe)
    return calls


collect_ignore = ["standins"]  # stand-ins of upstream code, imported by the integration tests only


def _mount_tmpfs(path, options):
    import subprocess

    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode}); the injected-OSError tests "
                    f"cover the same messages")
    return path


@pytest.fixture
def full_disk(tmp_path):
    """A folder on a 64 KiB tmpfs: the first sizeable write fills it (ENOSPC for real). Skipped where mount is not
    allowed."""
    import subprocess

    path = _mount_tmpfs(tmp_path / "full", "size=64k")
    yield path
    subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder on a read-only tmpfs (EROFS, even for root). Skipped where mount is not allowed."""
    import subprocess

    path = _mount_tmpfs(tmp_path / "ro", "ro,size=64k")
    yield path
    subprocess.run(["umount", "-l", str(path)], check=False)
