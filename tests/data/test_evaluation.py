"""`eval` end to end with a small feature extractor registered in torch-fidelity (no downloads).

FID is checked against our own float64 closed form on the same features (scipy's sqrtm), and
precision/recall against a direct k-NN computation, so the wiring (inputs, counts, subsets) is
tested independently of torch-fidelity's arithmetic.
"""
import json
import urllib.error

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

torch_fidelity = pytest.importorskip("torch_fidelity")
from torch_fidelity.feature_extractor_base import FeatureExtractorBase  # noqa: E402

from diffaug_noise.cli.main import main  # noqa: E402
from diffaug_noise.metrics.evaluation import EvaluationError, evaluate  # noqa: E402
from diffaug_noise.metrics.feature_cache import SPOT_CHECK_ROWS  # noqa: E402
from helpers import fid_reference  # noqa: E402

EXTRACTOR = "test-random-conv"


class RandomConvFeatures(FeatureExtractorBase):
    """8 features: a fixed random 3x3 conv bank on the image in [-1, 1], averaged over space, plus colour means."""

    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)
        self.conv = torch.nn.Conv2d(3, 5, 3)
        with torch.no_grad():
            w = torch.randn(5, 3, 3, 3, generator=torch.Generator().manual_seed(0))
            self.conv.weight.copy_(w)
            self.conv.bias.zero_()

    @staticmethod
    def get_provided_features_list():
        return ("feat",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return "feat"

    @staticmethod
    def can_be_compiled():
        return False

    def forward(self, x):
        x = x.float() / 127.5 - 1
        return (torch.cat([torch.tanh(self.conv(x)).mean((2, 3)), x.mean((2, 3))], dim=1).double(),)


if EXTRACTOR not in torch_fidelity.registry.FEATURE_EXTRACTORS_REGISTRY:
    torch_fidelity.register_feature_extractor(EXTRACTOR, RandomConvFeatures)

MODES = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40)]


def write_set(folder, n, modes, shift=0, seed=0):
    """n 12x12 images: a mode colour (cycled through `modes`) plus pixel noise, brightened by `shift`."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = np.array(modes[i % len(modes)], float) + rng.normal(0, 20, (12, 12, 3)) + shift
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(folder / f"{i:04d}.png")
    return folder


def features(folder):
    from diffaug_noise.data import ImageDataset

    ds = ImageDataset(folder)
    x = torch.stack([ds[i] for i in range(len(ds))])
    with torch.no_grad():
        return RandomConvFeatures(EXTRACTOR, ["feat"])(x)[0].numpy()


def recall_reference(real, fake, k=3):
    """Share of real samples inside some fake sample's k-NN ball (Kynkäänniemi et al. 2019)."""
    d_ff = np.linalg.norm(fake[:, None] - fake[None], axis=2)
    radius = np.sort(d_ff, axis=1)[:, k]  # k-th neighbour, the point itself at 0
    d_rf = np.linalg.norm(real[:, None] - fake[None], axis=2)
    return float((d_rf <= radius[None]).any(axis=1).mean())


@pytest.fixture(autouse=True)
def _cache_in_a_temporary_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFAUG_NOISE_DATA", str(tmp_path / "data-root"))


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    return {
        "real": write_set(root / "real", 160, MODES),
        "again": write_set(root / "again", 160, MODES, seed=1),
        "shifted": write_set(root / "shifted", 160, MODES, shift=40, seed=2),
        "dropped": write_set(root / "dropped", 160, MODES[:1], seed=3),
    }


def run(real, fake, **kw):
    return evaluate(real, fake, feature_extractor=EXTRACTOR, batch_size=50, **kw)


def test_fid_of_a_set_against_itself_is_zero_and_matches_the_closed_form(sets):
    same = run(sets["real"], sets["real"], metrics=("fid",))
    assert abs(same["fid"]) < 1e-6 and same["num_real"] == same["num_fake"] == 160
    other = run(sets["real"], sets["again"], metrics=("fid",))
    shifted = run(sets["real"], sets["shifted"], metrics=("fid",))
    reference = fid_reference(features(sets["real"]), features(sets["shifted"]))
    assert shifted["fid"] == pytest.approx(reference, rel=1e-4)
    assert shifted["fid"] > 20 * other["fid"] > 0  # a shift is far worse than a fresh draw of the same law


def test_recall_drops_when_modes_are_dropped(sets):
    full = run(sets["real"], sets["again"], metrics=("precision", "recall"))
    dropped = run(sets["real"], sets["dropped"], metrics=("precision", "recall"))
    assert dropped["recall"] < 0.5 < full["recall"]
    assert dropped["precision"] > 0.8  # what it does generate looks real
    reference = recall_reference(features(sets["real"]), features(sets["dropped"]))
    assert dropped["recall"] == pytest.approx(reference, abs=1e-6)


def test_kid_and_num_limit_both_sides(sets):
    result = run(sets["real"], sets["shifted"], metrics=("kid", "fid"), num=100)
    assert result["num_real"] == result["num_fake"] == 100
    assert result["kid"] > 0 and result["kid_std"] >= 0
    # real: the seeded draw (seed 0) of 100 of 160, in file order; generated: the folder's first 100
    chosen = sorted(torch.randperm(160, generator=torch.Generator().manual_seed(0))[:100].tolist())
    a, b = features(sets["real"])[chosen], features(sets["shifted"])[:100]
    assert result["fid"] == pytest.approx(fid_reference(a, b), rel=1e-4)


class TinyGenerator(torch.nn.Module):
    """Images of one mode colour; the z_dim attribute is what evaluate() needs."""

    z_dim = 4

    def forward(self, z):
        colour = torch.tensor(MODES[0], dtype=torch.float32).view(1, 3, 1, 1) / 127.5 - 1
        return (colour + 0.15 * z[:, :3, None, None]).expand(-1, -1, 12, 12)


def test_generator_file_needs_trust_and_then_generates_num_images(sets, tmp_path):
    path = tmp_path / "G.pt"
    torch.save({"G_ema": TinyGenerator()}, path)
    with pytest.raises(EvaluationError, match="--trust-pickle"):
        run(sets["real"], path, metrics=("recall",))
    result = run(sets["real"], path, metrics=("recall",), num=60, trust_pickle=True)
    assert result["num_fake"] == 60 and result["recall"] < 0.5  # one mode of four


def test_missing_weights_offline_names_the_file_and_the_fix(sets, monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(EvaluationError) as err:
        evaluate(sets["real"], sets["real"], metrics=("fid",))
    message = str(err.value)
    assert "weights-inception-2015-12-05-6726825d.pth" in message and "--weights PATH" in message
    assert str(tmp_path / "hub" / "checkpoints") in message


def test_cli_eval_prints_one_line_and_writes_json(sets, tmp_path):
    out = tmp_path / "m.json"
    result = CliRunner().invoke(main, ["eval", "--real", str(sets["real"]), "--fake", str(sets["shifted"]),
                                       "--metrics", "fid,recall", "--feature-extractor", EXTRACTOR, "--json", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fid ") and "recall" in lines[0]
    assert "160 generated vs 160 real" in lines[0]
    saved = json.loads(out.read_text())
    assert set(saved) >= {"fid", "recall", "num_real", "num_fake"}
    bad = CliRunner().invoke(main, ["eval", "--real", str(sets["real"]), "--fake", str(sets["real"]), "--metrics",
                                    "fud"])
    assert bad.exit_code == 2 and "unknown metric(s) ['fud']" in bad.output
    missing = CliRunner().invoke(main, ["eval", "--real", "lsun_church", "--data-root", str(tmp_path), "--fake",
                                        str(sets["real"])])
    assert missing.exit_code == 1 and "diffaug-noise data prepare lsun_church" in missing.output


def test_num_real_is_a_seeded_random_subset_not_the_first_images(sets):
    first = run(sets["real"], sets["shifted"], num_real=40, seed=0)
    again = run(sets["real"], sets["shifted"], num_real=40, seed=0)
    other = run(sets["real"], sets["shifted"], num_real=40, seed=1)
    assert first["num_real"] == 40 and first["num_fake"] == 160
    assert first["fid"] == again["fid"] != other["fid"]
    # the first 40 in file order hold all four modes 10 times; a random draw does not, so its FID differs
    feats_fake = features(sets["shifted"])
    order = features(sets["real"])[:40]
    assert first["fid"] != pytest.approx(fid_reference(feats_fake, order), rel=1e-6)


@pytest.mark.parametrize("protocol, keys", [("fid10k_full", {"fid"}), ("kid50k_full", {"kid", "kid_std"}),
                                            ("pr50k3_full", {"precision", "recall"})])
def test_protocols_set_metrics_and_counts(sets, protocol, keys):
    result = run(sets["real"], sets["shifted"], protocol=protocol)
    assert keys <= set(result) and not ({"fid", "kid", "precision", "recall"} - keys) & set(result)
    assert result["protocol"] == protocol and result["num_real"] == result["num_fake"] == 160  # capped by what exists
    with pytest.raises(EvaluationError, match="unknown protocol 'fid1m'"):
        run(sets["real"], sets["shifted"], protocol="fid1m")


def test_cli_protocol_prints_its_metrics(sets):
    result = CliRunner().invoke(main, ["eval", "--real", str(sets["real"]), "--fake", str(sets["dropped"]),
                                       "--protocol",
                                       "pr50k3_full", "--feature-extractor", EXTRACTOR, "--batch-size", "50"])
    assert result.exit_code == 0, result.output
    assert "precision" in result.output and "recall" in result.output and "pr50k3_full" in result.output


@pytest.fixture
def reads(monkeypatch, tmp_path):
    """The folders whose images were read, one entry per image; the cache goes to a fresh data root."""
    from diffaug_noise.data import ImageDataset

    monkeypatch.setenv("DIFFAUG_NOISE_DATA", str(tmp_path / "root"))
    seen = []
    original = ImageDataset.__getitem__

    def getitem(self, i):
        seen.append(str(self.files.path))
        return original(self, i)

    monkeypatch.setattr(ImageDataset, "__getitem__", getitem)
    return seen


def test_real_features_are_cached_reused_invalidated_and_never_trusted_when_damaged(sets, reads, tmp_path):
    import shutil

    real = tmp_path / "real"
    shutil.copytree(sets["real"], real)
    first = run(real, sets["shifted"])
    assert reads.count(str(real)) >= 160
    reads.clear()
    again = run(real, sets["shifted"])
    # the real set was not read again: torch-fidelity looks at one item to check the input's type, and the cache's
    # spot check at SPOT_CHECK_ROWS (and that one item again)
    assert again["fid"] == first["fid"] and reads.count(str(real)) <= 2 + SPOT_CHECK_ROWS
    assert run(real, sets["shifted"], cache=False)["fid"] == pytest.approx(first["fid"], rel=1e-9)
    assert reads.count(str(real)) >= 160
    reads.clear()

    cache = tmp_path / "root" / "fidelity-cache"
    files = sorted(cache.glob("real-*"))
    assert files
    for path in files:  # truncated: must be rebuilt, not trusted
        path.write_bytes(path.read_bytes()[:20])
    rebuilt = run(real, sets["shifted"])
    assert rebuilt["fid"] == pytest.approx(first["fid"], rel=1e-9) and reads.count(str(real)) >= 160
    reads.clear()

    shutil.copy(sets["shifted"] / "0000.png", real / "9999.png")  # the data changed: another key
    changed = run(real, sets["shifted"])
    assert changed["num_real"] == 161 and reads.count(str(real)) >= 161
    assert run(real, sets["shifted"], num_real=50)["num_real"] == 50  # another count: another key


def test_feature_extraction_reports_its_progress_batch_by_batch(sets):
    calls = []
    run(sets["real"], sets["shifted"], metrics=("fid",), num=120, cache=False, progress=lambda *a: calls.append(a))
    assert calls == [(side, done, 120) for side in ("generated", "real") for done in (50, 100, 120)]
