"""Snapshots of every adapter's run load outside training: `eval --fake SNAPSHOT --trust-pickle` and `load_snapshot`.

Each stand-in (tests/standins) trains a few iterations under its adapter; then its modules are forgotten and
``pkg_resources`` is made unimportable (setuptools >= 81 has none), as in a fresh process of a current install.
The snapshot must load with the checkout the run recorded, or the one given, with the adapter's shims.
"""
import json
import pathlib
import shutil
import sys

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

from diffaug_noise.cli.main import main
from diffaug_noise.integrations import ADAPTERS, UpstreamError, load_snapshot, snapshot_shims
from diffaug_noise.integrations.snapshots import RUN_RECORD, pickled_modules
from helpers import STANDINS, forget_upstream, run_dirs

UPSTREAM_MODULES = ("train", "training", "torch_utils", "dnnlib", "legacy", "pg_modules", "R3GAN", "pkg_resources")
# adapter name -> (stand-in, upstream arguments, adapter options)
RUNS = {
    "stylegan2": ("stylegan2_ada", ["--kimg", "0.016"], dict(preset="paper", aug="none")),
    "insgen": ("stylegan2_ada", ["--kimg", "0.016", "--cl"], dict(preset="insgen", aug="none")),
    "projectedgan": ("projected_gan", ["--cfg", "stylegan2", "--batch", "4", "--kimg", "0.008"],
                     dict(pretrained=False)),
    "stylegan3": ("stylegan3", ["--batch", "4", "--gamma", "1", "--cfg", "stylegan2", "--kimg", "0.016"], {}),
    "r3gan": ("r3gan", ["--batch", "4", "--preset", "CIFAR10", "--kimg", "0.016"], {}),
}


def forget_all():
    for standin in {s for s, _, _ in RUNS.values()}:
        forget_upstream(STANDINS / standin, UPSTREAM_MODULES)


@pytest.fixture
def fresh_process(monkeypatch):
    """No upstream module imported, no checkout on sys.path (other tests leave theirs), no adapter variable set."""
    forget_all()
    monkeypatch.setattr(sys, "path", [p for p in sys.path if not (pathlib.Path(p) / "train.py").is_file()])
    for adapter in ADAPTERS.values():
        monkeypatch.delenv(adapter.upstream.env_var, raising=False)
    yield monkeypatch
    forget_all()


def trained_snapshot(name, out):
    """Train the stand-in under adapter ``name``; its last snapshot and the trained D."""
    standin, args, options = RUNS[name]
    with ADAPTERS[name].patched(STANDINS / standin, shims=True, **options) as train:
        train.main(["--outdir", str(out), "--data", "unused", "--gpus", "1", *args], standalone_mode=False)
        D = train.RESULTS[-1][0]
    (run,) = run_dirs(out)
    forget_all()
    return sorted(run.glob("network-snapshot*.pkl"))[-1], D


def no_pkg_resources(monkeypatch):
    monkeypatch.setitem(sys.modules, "pkg_resources", None)  # `import pkg_resources` fails, as on setuptools >= 81


@pytest.mark.parametrize("name", list(RUNS))
def test_a_snapshot_loads_with_the_checkout_its_run_recorded(name, tmp_path, fresh_process):
    snapshot, D = trained_snapshot(name, tmp_path / "runs")
    record = json.loads((snapshot.parent / RUN_RECORD).read_text())
    assert record["upstream"] == ADAPTERS[name].upstream.name
    assert pathlib.Path(record["repo"]) == (STANDINS / RUNS[name][0]).resolve()
    no_pkg_resources(fresh_process)
    with pytest.raises(ModuleNotFoundError):  # what plain unpickling meets
        with open(snapshot, "rb") as f:
            __import__("pickle").load(f)
    data = load_snapshot(snapshot)
    assert type(data["D"]).__name__ == type(D).__name__
    assert data["D"].noise.p == D.noise.p and data["D"].noise.T == D.noise.T
    if "G_ema" in data:  # what upstream's generation scripts call
        G = data["G_ema"]
        assert G(torch.randn(2, G.z_dim), torch.zeros(2, G.c_dim)).shape[0] == 2
    assert sys.modules.get("pkg_resources") is None  # the stand-in was there while loading only


def test_a_copied_snapshot_needs_the_checkout_and_says_how_to_give_it(tmp_path, fresh_process):
    snapshot, D = trained_snapshot("stylegan3", tmp_path / "runs")
    copy = tmp_path / "elsewhere" / snapshot.name
    copy.parent.mkdir()
    shutil.copy(snapshot, copy)
    assert {"training.networks_stylegan2", "diffaug_noise.integrations.kit"} <= pickled_modules(copy)
    with pytest.raises(UpstreamError, match=r"names module\(s\) training.*pass --repo PATH"):
        load_snapshot(copy)
    with pytest.raises(UpstreamError, match="is not a checkout of an upstream"):
        load_snapshot(copy, repo=tmp_path)
    assert load_snapshot(copy, repo=STANDINS / "stylegan3")["D"].noise.p == D.noise.p
    forget_all()
    fresh_process.setenv("DIFFAUG_NOISE_STYLEGAN3_REPO", str(STANDINS / "stylegan3"))  # as `run` finds it
    assert load_snapshot(copy)["D"].noise.p == D.noise.p


def test_a_pickle_naming_no_upstream_module_needs_no_checkout(tmp_path, fresh_process):
    path = tmp_path / "g.pkl"
    torch.save({"G_ema": torch.nn.Linear(3, 3)}, path)  # torch.save's zip: its data.pkl is read
    assert "torch.nn.modules.linear" in pickled_modules(path)
    with snapshot_shims(path) as checkout:
        assert checkout is None
    assert isinstance(load_snapshot(path)["G_ema"], torch.nn.Linear)


def images(folder, count=24):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        PIL.Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.fixture
def channel_means():
    """A tiny feature extractor (per-channel means and spreads) registered once: no weights, no download."""
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase

    from diffaug_noise.metrics.evaluation import FEATURE_EXTRACTORS, register_feature_extractor

    class Means(FeatureExtractorBase):
        def __init__(self, name, features_list, **kwargs):
            super().__init__(name, features_list)

        @staticmethod
        def get_provided_features_list():
            return ("stats",)

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return "stats"

        @staticmethod
        def can_be_compiled():
            return False

        def forward(self, x):
            x = x.float()
            return (torch.cat([x.mean((2, 3)), x.std((2, 3))], 1),)

    if "test-channel-means" not in FEATURE_EXTRACTORS:
        register_feature_extractor("test-channel-means", Means)
    return "test-channel-means"


@pytest.mark.parametrize("name", ["stylegan2", "stylegan3", "r3gan"])
def test_eval_scores_a_snapshot_with_the_recorded_or_given_checkout(name, tmp_path, fresh_process, channel_means):
    snapshot, _ = trained_snapshot(name, tmp_path / "runs")
    no_pkg_resources(fresh_process)
    real = images(tmp_path / "real")
    args = ["eval", "--real", str(real), "--fake", str(snapshot), "--trust-pickle", "--feature-extractor",
            channel_means, "--num-fake", "16", "--no-cache", "--data-root", str(tmp_path / "root")]
    recorded = CliRunner().invoke(main, args)
    assert recorded.exit_code == 0, recorded.output
    assert "(16 generated vs 24 real, test-channel-means)" in recorded.output
    forget_all()
    copy = tmp_path / "copy.pkl"
    shutil.copy(snapshot, copy)
    missing = CliRunner().invoke(main, [a if a != str(snapshot) else str(copy) for a in args])
    assert missing.exit_code == 1 and "pass --repo PATH" in missing.output and "Traceback" not in missing.output
    given = CliRunner().invoke(main, [a if a != str(snapshot) else str(copy) for a in args]
                               + ["--repo", str(STANDINS / RUNS[name][0])])
    assert given.exit_code == 0 and given.output == recorded.output  # the same generator, the same seed
