"""`eval` against a shared data root someone else can write to: no file it reads runs code, nothing goes elsewhere.

A planted file is a pickle whose loading would create a marker file; every test asserts the
marker never appears and that the evaluation still gives the right number (damaged caches are
rebuilt).
"""
import pathlib

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

pytest.importorskip("torch_fidelity")

from diffaug_noise.cli.main import main  # noqa: E402
from diffaug_noise.metrics import digits_classifier as classifier  # noqa: E402
from diffaug_noise.metrics.evaluation import EvaluationError, evaluate, real_cache_name  # noqa: E402


class Payload:
    """Unpickling this touches ``marker``: the stand-in for any code an attacker would run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def plant_torch(path, marker):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"features": Payload(marker)}, path)


def plant_npz(path, marker):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez(f, format=np.int64(2), layer_features=np.array([Payload(marker)], dtype=object))


@pytest.fixture
def digits_root(tmp_path, monkeypatch):
    """A data root with the digits prepared, a home folder that must stay empty, and a marker that must not appear."""
    root, home = tmp_path / "root", tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("DIFFAUG_NOISE_DATA", raising=False)
    fake = tmp_path / "fake"
    fake.mkdir()
    from diffaug_noise.data.digits import load_digits, to_uint8

    images, _ = load_digits()
    for i, img in enumerate(to_uint8(images[:300]).squeeze(1).numpy()):
        Image.fromarray(img).convert("RGB").save(fake / f"{i:04d}.png")
    return root, home, fake, tmp_path / "MARKER"


def test_planted_feature_caches_run_nothing_and_are_rebuilt(digits_root):
    root, home, fake, marker = digits_root
    clean = evaluate("digits", fake, feature_extractor="digits-classifier", data_root=root, cache=False)
    real = root / "digits-8x8.zip"  # prepared on demand by the first call
    key = real_cache_name(real, "digits-classifier", 1797, 0, False)
    cache = root / "fidelity-cache"
    plant_npz(cache / f"{key}-features.npz", marker)  # our own cache's exact name, holding an object array
    for name in (f"{key}-digits-classifier-features-features.pt", f"{key}-digits-classifier-features-.pt",
                 f"{key}-digits-classifier-stat-fid-features.pt"):  # where torch-fidelity's own cache would look
        plant_torch(cache / name, marker)
    again = evaluate("digits", fake, feature_extractor="digits-classifier", data_root=root)
    assert not marker.exists()
    assert again["fid"] == pytest.approx(clean["fid"], rel=1e-6)
    assert not any(home.rglob("*")), "nothing may be written outside the data root"


def test_a_planted_classifier_cache_runs_nothing_and_is_retrained(digits_root):
    root, home, fake, marker = digits_root
    plant_torch(classifier.cache_path(0, root), marker)
    result = evaluate("digits", fake, feature_extractor="digits-classifier", data_root=root, cache=False)
    assert not marker.exists() and result["fid"] > 0
    assert classifier.load_classifier(0, root) is not None and not marker.exists()
    assert not any(home.rglob("*"))


def test_planted_inception_weights_are_refused_not_run(tmp_path, monkeypatch):
    marker = tmp_path / "MARKER"
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    plant_torch(hub / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth", marker)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        Image.new("RGB", (8, 8), (i, i, i)).save(folder / f"{i}.png")
    with pytest.raises(EvaluationError, match="holds pickled Python objects"):
        evaluate(folder, folder, data_root=tmp_path / "root")
    weights = tmp_path / "w.pth"
    plant_torch(weights, marker)
    with pytest.raises(EvaluationError, match="--weights: .*holds pickled Python objects"):
        evaluate(folder, folder, data_root=tmp_path / "root", weights=weights)
    assert not marker.exists()


def test_extractors_that_unpickle_their_weights_need_trust(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "a.png")
    Image.new("RGB", (8, 8)).save(folder / "b.png")
    with pytest.raises(EvaluationError, match="'vgg16' loads its weights by unpickling.*--trust-pickle"):
        evaluate(folder, folder, feature_extractor="vgg16", data_root=tmp_path)


def test_an_unreadable_generated_image_is_named_in_one_line(digits_root):
    root, home, fake, marker = digits_root
    (fake / "0007.png").write_bytes(b"not a png at all")
    result = CliRunner().invoke(main, ["eval", "--real", "digits", "--fake", str(fake), "--data-root", str(root),
                                       "--feature-extractor", "digits-classifier"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "'0007.png'" in result.output and "cannot be read" in result.output
    assert "InceptionV3" not in result.output  # it was never a download problem


def test_a_read_only_data_root_evaluates_without_caching(digits_root, read_only_dir):
    root, home, fake, marker = digits_root
    evaluate("digits", fake, feature_extractor="digits-classifier", data_root=root, cache=False)  # prepares the digits
    import shutil

    real = read_only_dir.parent / "real.zip"
    shutil.copy(root / "digits-8x8.zip", real)
    with pytest.warns(UserWarning, match=r"EROFS.*the real features are not cached"):
        result = evaluate(real, fake, feature_extractor="digits-classifier", data_root=read_only_dir)
    assert result["fid"] > 0
