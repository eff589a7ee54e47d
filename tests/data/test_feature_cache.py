"""The real set's feature cache under a shared data root: a planted or damaged file is refused and rebuilt.

A cache is read only after its header says it holds finite floats of the expected shape (so a
header declaring a terabyte is refused before anything is allocated), its digest matches, and a
few of its rows, drawn afresh each time, equal the features of those images computed now. Every
test checks the score equals the one computed without a cache, and that the file is rebuilt.
"""
import io
import warnings
import zipfile

import numpy as np
import pytest
import torch

from helpers import channel_stats_extractor, noise_images

pytest.importorskip("torch_fidelity")
EXTRACTOR = channel_stats_extractor()

from diffaug_noise.metrics.evaluation import evaluate  # noqa: E402
from diffaug_noise.metrics.feature_cache import write_cache  # noqa: E402

ROWS, WIDTH = 40, 6


@pytest.fixture
def sets(tmp_path):
    real, fake = noise_images(tmp_path / "real", ROWS, 0), noise_images(tmp_path / "fake", 30, 1)
    root = tmp_path / "root"
    clean = evaluate(real, fake, metrics=("fid", "kid"), feature_extractor=EXTRACTOR, data_root=root, cache=False)
    return real, fake, root, clean


def score(real, fake, root):
    return evaluate(real, fake, metrics=("fid", "kid"), feature_extractor=EXTRACTOR, data_root=root)


def the_cache(root):
    (path,) = (root / "fidelity-cache").glob("*.npz")
    return path


def npy(array=None, header=None):
    """One .npy member: ``array`` as numpy writes it, or a bare ``header`` dict (a file that lies about its size)."""
    buffer = io.BytesIO()
    if header is None:
        np.save(buffer, array, allow_pickle=False)
    else:
        np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def plant(path, **members):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(f"{name}.npy", data)


def genuine(path):
    with np.load(path, allow_pickle=False) as saved:
        return {name: saved[name] for name in saved.files}


FEATURES = np.random.default_rng(2).random((ROWS, WIDTH)).astype(np.float32) * 100
POISONS = {
    "wrong width": FEATURES[:, :5],
    "wrong row count": FEATURES[:-1],
    "0-d": np.float32(3.0),
    "1-d": FEATURES[:, 0],
    "3-d": FEATURES[None],
    "NaN": np.where(np.eye(ROWS, WIDTH, dtype=bool), np.nan, FEATURES).astype(np.float32),
    "inf": np.where(np.eye(ROWS, WIDTH, dtype=bool), np.inf, FEATURES).astype(np.float32),
    "int": FEATURES.astype(np.int64),
    "bool": FEATURES > 50,
    "float16": FEATURES.astype(np.float16),
    "complex": FEATURES.astype(np.complex64),
    "str": FEATURES.astype(str),
}


@pytest.mark.parametrize("poison", sorted(POISONS))
def test_a_cache_of_the_wrong_shape_or_dtype_is_refused_and_rebuilt(sets, poison):
    real, fake, root, clean = sets
    score(real, fake, root)
    path = the_cache(root)
    members = {name: npy(value) for name, value in genuine(path).items()}
    plant(path, **{**members, "layer_stats": npy(POISONS[poison])})
    with pytest.warns(UserWarning, match=r"feature cache '.*\.npz' .*; computing the features afresh"):
        again = score(real, fake, root)
    assert again["fid"] == pytest.approx(clean["fid"], rel=1e-9) and again["kid"] == pytest.approx(clean["kid"])
    assert genuine(the_cache(root))["layer_stats"].shape == (ROWS, WIDTH)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt cache is used, silently
        assert score(real, fake, root)["fid"] == pytest.approx(clean["fid"], rel=1e-9)


def test_a_header_declaring_a_terabyte_is_refused_before_anything_is_allocated(sets):
    real, fake, root, clean = sets
    score(real, fake, root)
    path = the_cache(root)
    members = {name: npy(value) for name, value in genuine(path).items()}
    huge = {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)}
    plant(path, **{**members, "layer_stats": npy(header=huge)})
    with pytest.warns(UserWarning, match=r"layer_stats .*\(1000000, 1000000\)"):
        again = score(real, fake, root)
    assert again["fid"] == pytest.approx(clean["fid"], rel=1e-9)


def test_a_cache_of_the_right_shape_but_other_features_is_not_used(sets, tmp_path):
    """The silent case: a cache of another set under this set's name, and one written by our own writer with other
    features (so its digest is right); both were used before (FID far from the true one)."""
    real, fake, root, clean = sets
    score(real, fake, root)
    path = the_cache(root)
    saved = genuine(path)
    other = {**saved, "layer_stats": FEATURES}  # the digest no longer matches
    plant(path, **{name: npy(value) for name, value in other.items()})
    with pytest.warns(UserWarning, match="digest"):
        assert score(real, fake, root)["fid"] == pytest.approx(clean["fid"], rel=1e-9)
    features = {"stats": torch.from_numpy(saved["layer_stats"].copy())}
    features["stats"][::2] += 5.0  # half the rows moved: a forger who knows our format recomputes the digest
    write_cache(path, features)
    with pytest.warns(UserWarning, match="do not match the features computed now"):
        assert score(real, fake, root)["fid"] == pytest.approx(clean["fid"], rel=1e-9)


@pytest.mark.parametrize("damage", ["not a zip", "no format", "format 2", "empty", "too large", "broken header",
                                    "unknown compression"])
def test_a_damaged_or_older_cache_is_rebuilt_with_one_line(sets, damage):
    real, fake, root, clean = sets
    score(real, fake, root)
    path = the_cache(root)
    saved = genuine(path)
    if damage == "not a zip":
        path.write_bytes(b"PK\x03\x04 truncated")
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "broken header":  # numpy's parser raised tokenize's TokenError, which nothing caught
        members = {name: npy(value) for name, value in saved.items()}
        text = b"{'descr': '<f4', 'fortran_order': False, 'shape': (40,"
        text += b" " * (-(len(text) + 11) % 64) + b"\n"
        members["layer_stats"] = b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text
        plant(path, **members)
    elif damage == "unknown compression":  # zipfile's NotImplementedError was not caught
        data = bytearray(path.read_bytes())
        for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):  # local and central headers' method
            start = data.find(signature)
            while start >= 0:
                data[start + offset:start + offset + 2] = (99).to_bytes(2, "little")
                start = data.find(signature, start + 4)
        path.write_bytes(bytes(data))
    elif damage == "too large":  # 20,000 members, 1 MB: refused by its size before zipfile parses its directory
        with zipfile.ZipFile(path, "w") as z:
            for i in range(20_000):
                z.writestr(f"m{i}", b"")
    else:
        members = {name: npy(value) for name, value in saved.items() if name != "format"}
        if damage == "format 2":
            members["format"] = npy(np.int64(2))
        plant(path, **members)
    with pytest.warns(UserWarning) as caught:
        again = score(real, fake, root)
    assert again["fid"] == pytest.approx(clean["fid"], rel=1e-9)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "\n" not in messages[0] and str(path) in messages[0], messages
    assert ("another version (format 2" in messages[0]) == (damage == "format 2")
    assert ("bytes, more than a cache of these features can be" in messages[0]) == (damage == "too large")


@pytest.mark.parametrize("plant", ["untrained weights", "NaN weights"])
def test_a_planted_digits_classifier_of_the_right_shape_is_retrained(tmp_path, plant):
    """The other cache eval and run digits read from the data root: a classifier with the right keys and shapes but
    other weights was used silently (another FD_digits)."""
    from diffaug_noise.checkpoint import save_checkpoint
    from diffaug_noise.data.digits import load_digits
    from diffaug_noise.metrics import digits_classifier as classifier

    trained = classifier.load_classifier(0, tmp_path / "clean")
    forged = classifier.DigitsClassifier().state_dict()
    if plant == "NaN weights":
        forged = {k: torch.full_like(v, float("nan")) for k, v in forged.items()}
    save_checkpoint({"seed": 0, "version": classifier.VERSION, "weights": forged}, classifier.cache_path(0, tmp_path))
    with pytest.warns(UserWarning, match=r"digits classifier cache '.*' is not the trained classifier \(it classifies "
                                         r"\d+\.\d % of the digits"):
        net = classifier.load_classifier(0, tmp_path)
    images, _ = load_digits()
    assert torch.equal(net.features(images), trained.features(images))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the retrained cache replaced the planted one
        assert torch.equal(classifier.load_classifier(0, tmp_path).features(images), trained.features(images))
