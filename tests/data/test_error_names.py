"""Data errors name the file and the fix, not a file object or the wrong cause (issue 31, item 6)."""
import PIL.Image
import pytest

from diffaug_noise.cli.main import one_line
from diffaug_noise.data import DatasetError, prepare
from diffaug_noise.data.sources import ImageDataset


def corrupt_folder(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    PIL.Image.new("RGB", (8, 8)).save(folder / "a.png")
    (folder / "x.png").write_bytes(b"not a png" * 10)
    return folder


def test_a_corrupt_image_read_by_us_is_named_without_pils_file_object(tmp_path):
    with pytest.raises(DatasetError) as err:
        ImageDataset(corrupt_folder(tmp_path))[1]
    assert "'x.png' in" in str(err.value) and "<_io" not in str(err.value)
    assert "(UnidentifiedImageError: cannot identify image file)" in str(err.value)


def test_a_corrupt_image_that_upstreams_loader_met_is_one_line_naming_it(tmp_path):
    """Upstream's dataset opens the file itself: PIL's error names a BufferedReader; the CLI names the path."""
    path = corrupt_folder(tmp_path) / "x.png"
    with pytest.raises(OSError) as err, open(path, "rb") as f:
        PIL.Image.open(f)  # what upstream's ImageFolderDataset does
    assert "<_io.BufferedReader" in str(err.value)
    line = one_line(err.value)
    assert line.startswith(f"image {str(path)!r} cannot be read (not an image file PIL decodes")
    assert "data prepare NAME --source FOLDER" in line and "free space" not in line and "<_io" not in line


def test_cifar10_without_its_batches_says_where_they_come_from(tmp_path):
    with pytest.raises(DatasetError, match=r"lacks CIFAR-10 batches .*they come from https://www\.cs\.toronto\.edu/"
                                           r"~kriz/cifar-10-python\.tar\.gz .*--source"):
        prepare("cifar10", tmp_path, data_root=tmp_path / "root")
