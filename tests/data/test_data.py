"""Dataset registry and `data prepare`: a tiny LSUN-format lmdb, image folders, zips and CIFAR-10 batches made here."""
import io
import json
import pickle
import tarfile
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from diffaug_noise.cli.main import main
from diffaug_noise.data import DATASETS, DatasetError, ImageDataset, prepare, resolve_data

lmdb = pytest.importorskip("lmdb")

N, CORRUPT = 30, 7


def colour(i):
    """Source image i is one solid colour that encodes i (lossless, so it survives the round trip)."""
    return (8 * i, 255 - 8 * i, 100 + 3 * i)


def encode(array, fmt="WEBP"):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return buffer.getvalue()


@pytest.fixture
def lsun(tmp_path):
    """An lmdb like LSUN's export: hex keys, webp values of varying non-square sizes, one corrupt value."""
    path = tmp_path / "bedroom_train_lmdb"
    env = lmdb.open(str(path), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for i in range(N):
            h, w = 40 + i % 5, 56  # landscape: the center crop drops 8 columns or more on each side
            img = np.empty((h, w, 3), np.uint8)
            img[:] = colour(i)
            img[:, :4] = (255, 0, 255)  # magenta left border: gone after a center crop
            value = encode(img)
            if i == CORRUPT:
                value = b"\x00garbage" + value[40:]
            txn.put(f"{i:040x}".encode(), value)
    env.close()
    return path


def zip_images(path):
    with zipfile.ZipFile(path) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".png"))
        return names, [np.asarray(Image.open(io.BytesIO(z.read(n)))) for n in names]


def test_lsun_lmdb_prepares_in_order_cropped_and_skips_the_corrupt_image(lsun, tmp_path):
    report = prepare("lsun_bedroom", lsun, data_root=tmp_path / "root", resolution=16)
    assert report.path == str(tmp_path / "root" / "lsun_bedroom-16x16.zip")
    assert report.images == N - 1 and not report.up_to_date
    assert report.skipped == [f"{CORRUPT:040x} (UnidentifiedImageError)"]
    names, images = zip_images(report.path)
    assert names == [f"00000/img{i:08d}.png" for i in range(N - 1)]
    expected = [i for i in range(N) if i != CORRUPT]  # lmdb key order, the corrupt one left out
    for img, i in zip(images, expected):
        assert img.shape == (16, 16, 3) and img.dtype == np.uint8
        assert np.abs(img.astype(int) - colour(i)).max() <= 1  # this source image, and no magenta border
    with zipfile.ZipFile(report.path) as z:
        assert "dataset.json" not in z.namelist()  # LSUN has no labels


def test_rerun_is_a_noop_and_changed_settings_rebuild(lsun, tmp_path):
    out = tmp_path / "bed.zip"
    prepare("lsun_bedroom", lsun, out=out, resolution=8)
    stamp = out.stat().st_mtime_ns
    again = prepare("lsun_bedroom", lsun, out=out, resolution=8)
    assert again.up_to_date and again.images == N - 1 and again.skipped == [f"{CORRUPT:040x} (UnidentifiedImageError)"]
    assert out.stat().st_mtime_ns == stamp
    rebuilt = prepare("lsun_bedroom", lsun, out=out, resolution=8, max_images=5)
    assert not rebuilt.up_to_date and rebuilt.images == 5
    assert len(zip_images(out)[0]) == 5


def test_max_images_counts_source_entries_as_dataset_tool_does(lsun, tmp_path):
    """dataset_tool.py --max-images=N reads the first N lmdb entries: a corrupt one among them is one image fewer."""
    report = prepare("lsun_bedroom", lsun, out=tmp_path / "ten.zip", resolution=8, max_images=CORRUPT + 3)
    assert report.images == CORRUPT + 2 and report.skipped == [f"{CORRUPT:040x} (UnidentifiedImageError)"]
    _, images = zip_images(report.path)
    reference = prepare("lsun_bedroom", lsun, out=tmp_path / "all.zip", resolution=8)
    _, all_images = zip_images(reference.path)
    assert all(np.array_equal(a, b) for a, b in zip(images, all_images[:CORRUPT + 2]))  # the same first images


def test_subsets_are_deterministic_exact_in_size_and_in_source_order(lsun, tmp_path):
    def subset(seed, name):
        report = prepare("lsun_bedroom", lsun, out=tmp_path / name, resolution=8, subset=20, seed=seed)
        assert report.images == 20
        return [int(img[0, 0, 0]) // 8 for img in zip_images(report.path)[1]]  # back to source indices

    a, b, c = subset(1, "a.zip"), subset(1, "b.zip"), subset(2, "c.zip")
    assert a == b and a != c
    assert a == sorted(a) and len(set(a)) == 20 and CORRUPT not in a and CORRUPT not in c
    with pytest.raises(DatasetError, match="larger than the source"):
        prepare("lsun_bedroom", lsun, out=tmp_path / "d.zip", resolution=8, subset=N + 1)


def test_registry_subsets_take_their_size_from_the_name(tmp_path):
    src = tmp_path / "ffhq"
    src.mkdir()
    for i in range(250):
        Image.new("RGB", (12, 12), colour(i % 30)).save(src / f"{i:05d}.png")
    report = prepare("ffhq_200", src, data_root=tmp_path / "root", resolution=8)
    assert report.images == DATASETS["ffhq_200"].subset == 200


def test_image_folder_and_zip_sources(tmp_path):
    folder = tmp_path / "imgs"
    (folder / "b").mkdir(parents=True)
    Image.new("RGB", (10, 10), colour(1)).save(folder / "a.png")
    Image.new("L", (10, 20), 77).save(folder / "b" / "c.jpg")  # grayscale, portrait
    (folder / "notes.txt").write_text("not an image")
    (folder / "b" / "d.png").write_bytes(b"truncated")
    report = prepare("mine", folder, out=tmp_path / "f.zip", resolution=4)
    assert report.images == 2 and report.skipped == ["b/d.png (UnidentifiedImageError)"]
    names, images = zip_images(report.path)
    assert [img.shape for img in images] == [(4, 4, 3), (4, 4, 3)]
    assert np.abs(images[1].astype(int) - 77).max() <= 1  # grey became RGB
    zipped = prepare("mine", report.path, out=tmp_path / "again.zip", resolution=4)  # a zip as the source
    assert zipped.images == 2


def test_cifar10_batches_give_labels_and_a_hostile_pickle_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    archive = tmp_path / "cifar-10-python.tar.gz"
    labels = []
    with tarfile.open(archive, "w:gz") as tar:
        for b in range(1, 6):
            data = rng.integers(0, 255, (3, 3 * 32 * 32), dtype=np.uint8)
            batch_labels = [int(v) for v in rng.integers(0, 10, 3)]
            labels += batch_labels
            raw = pickle.dumps({b"data": data, b"labels": batch_labels})
            info = tarfile.TarInfo(f"cifar-10-batches-py/data_batch_{b}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    report = prepare("cifar10", archive, data_root=tmp_path / "root")
    assert report.images == 15 and report.resolution == 32
    with zipfile.ZipFile(report.path) as z:
        saved = json.loads(z.read("dataset.json"))["labels"]
    assert saved == [[f"00000/img{i:08d}.png", labels[i]] for i in range(15)]

    hostile = tmp_path / "evil"
    (hostile / "cifar-10-batches-py").mkdir(parents=True)
    for b in range(1, 6):
        (hostile / "cifar-10-batches-py" / f"data_batch_{b}").write_bytes(
            b"cos\nsystem\n(S'echo pwned'\ntR.")  # a pickle that would call os.system
    with pytest.raises(DatasetError, match="os.system"):
        prepare("cifar10", hostile, data_root=tmp_path / "root2")


def test_nothing_decodable_leaves_no_file(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "x.png").write_bytes(b"nope")
    with pytest.raises(DatasetError, match=r"no image in .* could be used \(1 failed to decode, 0 too small for"):
        prepare("mine", folder, out=tmp_path / "bad.zip", resolution=4)
    assert not (tmp_path / "bad.zip").exists() and list(tmp_path.glob(".bad.zip*")) == []


def test_resolve_data_names_paths_and_what_to_do_when_missing(tmp_path, monkeypatch):
    with pytest.raises(DatasetError, match="unknown dataset 'lsun_kitchen'; choose one of cifar10"):
        resolve_data("lsun_kitchen")
    with pytest.raises(DatasetError) as err:
        resolve_data("lsun_church", tmp_path)
    message = str(err.value)
    assert "church_outdoor_train_lmdb" in message
    assert f"diffaug-noise data prepare lsun_church --source PATH --data-root '{tmp_path}'" in message
    with pytest.raises(DatasetError, match="does not exist"):
        resolve_data(str(tmp_path / "missing.zip"))
    prepared = tmp_path / "lsun_church-256x256.zip"
    prepared.write_bytes(b"")
    monkeypatch.setenv("DIFFAUG_NOISE_DATA", str(tmp_path))
    assert resolve_data("lsun_church") == prepared
    assert resolve_data(str(tmp_path)) == tmp_path  # a folder passes through


def test_prepared_zip_reads_back_as_uint8_tensors(lsun, tmp_path):
    report = prepare("lsun_bedroom", lsun, out=tmp_path / "x.zip", resolution=8, max_images=3)
    ds = ImageDataset(report.path)
    assert len(ds) == 3 and ds[2].shape == (3, 8, 8) and str(ds[2].dtype) == "torch.uint8"
    assert abs(int(ds[2][0, 0, 0]) - colour(2)[0]) <= 1


def test_cli_prepare_warns_about_corrupt_images_and_is_idempotent(lsun, tmp_path):
    args = ["data", "prepare", "lsun_bedroom", "--source", str(lsun), "--data-root", str(tmp_path), "--resolution", "8"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert f"skipped 1 corrupt image(s): {CORRUPT:040x}" in first.output
    assert f"{N - 1} images at 8x8" in first.output
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0 and "up to date" in second.output
    listed = CliRunner().invoke(main, ["data", "list", "--data-root", str(tmp_path)])
    assert listed.exit_code == 0 and "lsun_bedroom" in listed.output
    bad = CliRunner().invoke(main, ["data", "prepare", "mystery", "--source", str(lsun)])
    assert bad.exit_code != 0 and "give the resolution" in bad.output


def dataset_tool_reference(img, transform, width, height):
    """StyleGAN2-ADA dataset_tool.py's make_transform geometry, written out with numpy slicing and PIL's resize."""
    if transform == "center-crop":
        crop = np.min(img.shape[:2])
        img = img[(img.shape[0] - crop) // 2:(img.shape[0] + crop) // 2,
                  (img.shape[1] - crop) // 2:(img.shape[1] + crop) // 2]
        return np.array(Image.fromarray(img, "RGB").resize((width, height), Image.LANCZOS))
    ch = int(np.round(width * img.shape[0] / img.shape[1]))
    if img.shape[1] < width or ch < height:
        return None
    img = img[(img.shape[0] - ch) // 2:(img.shape[0] + ch) // 2]
    img = np.array(Image.fromarray(img, "RGB").resize((width, height), Image.LANCZOS))
    canvas = np.zeros([width, width, 3], dtype=np.uint8)
    canvas[(width - height) // 2:(width + height) // 2, :] = img
    return canvas


@pytest.mark.parametrize("transform, height", [("center-crop", 16), ("center-crop-wide", 16), ("center-crop-wide", 10)])
def test_transforms_match_dataset_tool_pixel_for_pixel(tmp_path, transform, height):
    from diffaug_noise.data.prepare import transform_image

    rng = np.random.default_rng(0)
    for shape in [(30, 40), (41, 30), (17, 33), (16, 16), (12, 40)]:
        img = rng.integers(0, 255, shape + (3,), dtype=np.uint8)
        expected = dataset_tool_reference(img, transform, 16, height)
        got = transform_image(Image.fromarray(img), 16, transform, height)
        if expected is None:
            assert got is None, shape
        else:
            assert np.array_equal(np.asarray(got), expected), shape


def test_center_crop_wide_drops_landscape_images_as_the_forks_church_set_does(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name, size in [("portrait", (20, 30)), ("landscape", (30, 20)), ("square", (24, 24))]:
        Image.new("RGB", size, (200, 10, 10)).save(src / f"{name}.png")
    report = prepare("church", src, out=tmp_path / "c.zip", resolution=16, transform="center-crop-wide")
    assert report.images == 2 and report.dropped == ["landscape.png (too small for center-crop-wide 16x16)"]
    assert report.skipped == []  # nothing was corrupt
    shown = CliRunner().invoke(main, ["data", "prepare", "church", "--source", str(src), "--out",
                                      str(tmp_path / "cli.zip"),
                                      "--resolution", "16", "--transform", "center-crop-wide"])
    assert shown.exit_code == 0 and "skipped 1 image(s) too small for the transform: landscape.png" in shown.output
    assert "corrupt" not in shown.output and "2 images at 16x16, 1 skipped" in shown.output
    padded = prepare("church", src, out=tmp_path / "p.zip", resolution=16, transform="pad")
    assert padded.images == 3
    _, images = zip_images(padded.path)
    landscape = images[0]  # sorted names: landscape first; black bands above and below the image
    assert landscape[0].max() <= 10 and abs(int(landscape[8, 8, 0]) - 200) <= 2  # black band (Lanczos rings a little)
    with pytest.raises(DatasetError, match="height only applies to --transform center-crop-wide"):
        prepare("church", src, out=tmp_path / "x.zip", resolution=16, height=8)
    with pytest.raises(DatasetError, match="unknown transform 'stretch'"):
        prepare("church", src, out=tmp_path / "x.zip", resolution=16, transform="stretch")


def test_labels_from_class_folders(tmp_path):
    src = tmp_path / "src"
    for cls, n in (("cat", 2), ("dog", 3)):
        (src / cls).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(src / cls / f"{i}.png")
    report = prepare("pets", src, out=tmp_path / "pets.zip", resolution=8, labels="folders")
    with zipfile.ZipFile(report.path) as z:
        labels = json.loads(z.read("dataset.json"))["labels"]
    assert [label for _, label in labels] == [0, 0, 1, 1, 1]  # cat = 0, dog = 1, in sorted path order
    Image.new("RGB", (8, 8)).save(src / "loose.png")
    with pytest.raises(DatasetError, match="'loose.png' .* is not inside a class folder"):
        prepare("pets", src, out=tmp_path / "p2.zip", resolution=8, labels="folders")


def test_the_registry_lsun_sets_are_the_forks_200k_sets_with_their_transforms(tmp_path):
    src = tmp_path / "church"
    src.mkdir()
    for i, size in enumerate([(20, 30), (30, 20), (24, 24)]):
        Image.new("RGB", size, (10 * i, 0, 0)).save(src / f"{i}.png")
    with pytest.raises(DatasetError, match="pass the folder that holds data.mdb .*--source-format image_folder"):
        prepare("lsun_church", src, out=tmp_path / "c.zip", resolution=16)  # the registry's source format: an lmdb
    report = prepare("lsun_church", src, out=tmp_path / "c.zip", resolution=16, source_format="image_folder")
    assert report.images == 2 and "1.png" in report.dropped[0]  # the landscape one, as dataset_tool.py drops it
    with zipfile.ZipFile(report.path) as z:
        settings = json.loads(z.read("diffaug_noise.json"))["settings"]
    assert settings["max_images"] == 200_000 and settings["transform"] == "center-crop-wide"
    full = prepare("lsun_church_full", src, out=tmp_path / "f.zip", resolution=16, source_format="image_folder")
    assert full.images == 3
