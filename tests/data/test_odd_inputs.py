"""Small or odd inputs: too few images for a metric, images of mixed sizes, symlink loops in a source folder.

Each used to end in a traceback (`LinAlgError`, `kthvalue(): selected number k out of range`,
`stack expects each tensor to be equal size`, `Symlink loop`) or, for KID of one image, a silent
NaN; now each is one line saying what is needed, or, for loops, a source that is read.
"""
import pytest
from click.testing import CliRunner
from PIL import Image

from diffaug_noise.cli.main import main
from diffaug_noise.data import ImageDataset, prepare
from helpers import channel_stats_extractor, noise_images

fidelity = pytest.importorskip("torch_fidelity")


@pytest.mark.parametrize("metric, count, needed", [("fid", 1, 2), ("kid", 1, 2), ("precision", 3, 4),
                                                   ("recall", 2, 4), ("fid,recall", 3, 4)])
@pytest.mark.parametrize("side", ["fake", "real"])
def test_a_set_too_small_for_the_metric_is_one_line(tmp_path, metric, count, needed, side):
    small, enough = noise_images(tmp_path / "small", count, 0), noise_images(tmp_path / "enough", 20, 1)
    real, fake = (enough, small) if side == "fake" else (small, enough)
    result = CliRunner().invoke(main, ["eval", "--real", str(real), "--fake", str(fake), "--metrics", metric,
                                       "--feature-extractor", channel_stats_extractor(), "--no-cache",
                                       "--data-root", str(tmp_path / "root")])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    (line,) = [line for line in result.output.splitlines() if line.strip()]
    assert f"--{side} {str(small)!r} gives {count} image(s)" in line and f"at least {needed} on each side" in line


def test_the_smallest_sets_each_metric_accepts_score(tmp_path):
    from diffaug_noise.metrics.evaluation import evaluate

    real = noise_images(tmp_path / "real", 20, 1)
    for metrics, count in ((("fid", "kid"), 2), (("precision", "recall"), 4)):
        result = evaluate(real, noise_images(tmp_path / f"fake{count}", count, 0), metrics=metrics,
                          feature_extractor=channel_stats_extractor(), cache=False, data_root=tmp_path / "root")
        assert all(result[m] == result[m] for m in metrics)  # numbers, not NaN


def test_images_of_mixed_sizes_are_one_line_naming_the_odd_one(tmp_path):
    fake = noise_images(tmp_path / "fake", 4, 0, size=8)
    Image.new("RGB", (10, 12)).save(fake / "odd.png")
    real = noise_images(tmp_path / "real", 20, 1)
    result = CliRunner().invoke(main, ["eval", "--real", str(real), "--fake", str(fake), "--feature-extractor",
                                       channel_stats_extractor(), "--no-cache", "--data-root", str(tmp_path / "root")])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    (line,) = [line for line in result.output.splitlines() if line.strip()]
    assert "'odd.png'" in line and "is 10x12" in line and "'000.png' is 8x8" in line and "one size" in line


LOOPS = {  # what to plant in the source folder, and the symlinks the report lists as loops
    "file self loop": (lambda src: (src / "x.png").symlink_to(src / "x.png"), ["x.png (a symlink loop)"]),
    "file mutual loop": (lambda src: ((src / "a.png").symlink_to(src / "b.png"),
                                      (src / "b.png").symlink_to(src / "a.png")),
                         ["a.png (a symlink loop)", "b.png (a symlink loop)"]),
    "a link through itself": (lambda src: (src / "in.png").symlink_to("in.png/x"), ["in.png (a symlink loop)"]),
    "folder self loop": (lambda src: (src / "loop").symlink_to(src / "loop"), []),
    "folder mutual loop": (lambda src: ((src / "l1").symlink_to(src / "l2", target_is_directory=True),
                                        (src / "l2").symlink_to(src / "l1", target_is_directory=True)), []),
    "loop back to the source": (lambda src: ((src / "sub").mkdir(),
                                             (src / "sub" / "up").symlink_to(src, target_is_directory=True)), []),
}


@pytest.mark.parametrize("plant", sorted(LOOPS))
def test_symlink_loops_in_a_source_folder_end(tmp_path, plant):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        Image.new("RGB", (12, 12), (60 * i, 0, 0)).save(src / f"{i}.png")
    make, looped = LOOPS[plant]
    make(src)
    report = prepare("mine", src, out=tmp_path / "out.zip", resolution=8)
    assert report.images == 3 and sorted(report.outside) == looped
    assert len(ImageDataset(src)) == 3
    result = CliRunner().invoke(main, ["data", "prepare", "mine", "--source", str(src), "--resolution", "8", "--out",
                                       str(tmp_path / "cli.zip")])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    if looped:
        assert f"did not follow {len(looped)} symlink(s) pointing out of the source or in a loop" in result.output


def test_non_finite_features_are_one_line_not_a_linalg_error(tmp_path):
    """1x1 images give the channel-stats extractor a NaN spread (a std of one value): any extractor's NaN or inf
    features ended in LinAlgError: Array must not contain infs or NaNs."""
    fake = noise_images(tmp_path / "fake", 6, 0, size=1)
    real = noise_images(tmp_path / "real", 20, 1)
    for real_set, fake_set, side in ((real, fake, "fake"), (fake, real, "real")):
        result = CliRunner().invoke(main, ["eval", "--real", str(real_set), "--fake", str(fake_set),
                                           "--feature-extractor", channel_stats_extractor(), "--no-cache",
                                           "--data-root", str(tmp_path / "root")])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        (line,) = [line for line in result.output.splitlines() if line.strip()]
        assert f"gave NaN or inf features for 6 of the 6 {side} images" in line


def test_names_with_control_characters_are_echoed_escaped(tmp_path):
    """A source file's name is a stranger's text too: `data prepare` listed it raw (a newline forged a line of its
    own, escape codes repainted the terminal)."""
    src = noise_images(tmp_path / "src", 3, 0)
    (src / "bad\x1b[2J\nError: forged\u202e.png").write_bytes(b"not a png")
    (src / "café.png").write_bytes(b"not a png either")
    result = CliRunner().invoke(main, ["data", "prepare", "mine", "--source", str(src), "--resolution", "8", "--out",
                                       str(tmp_path / "out.zip")])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\u202e" not in result.output and "\nError: forged" not in result.output
    assert "bad\\x1b[2J\\nError: forged\\u202e.png (UnidentifiedImageError)" in result.output
    assert "café.png (UnidentifiedImageError)" in result.output  # printable letters stay as they are


def _unknown_compression(path, member_index):
    """Mark one member of the zip at ``path`` as compressed with method 99 (no reader knows it)."""
    data = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):  # its local and its central header
        at = -1
        for _ in range(member_index + 1):
            at = data.find(signature, at + 1)
        data[at + offset:at + offset + 2] = (99).to_bytes(2, "little")
    path.write_bytes(bytes(data))


def test_a_zip_member_no_reader_can_open_is_a_corrupt_image_not_a_traceback(tmp_path):
    """An encrypted member or an unknown compression made zipfile raise RuntimeError or NotImplementedError, through
    `data prepare` and `eval`."""
    import io
    import zipfile

    src = tmp_path / "src.zip"
    with zipfile.ZipFile(src, "w") as z:
        for i in range(5):
            buffer = io.BytesIO()
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(buffer, format="PNG")
            z.writestr(f"{i}.png", buffer.getvalue())
    _unknown_compression(src, 1)
    report = prepare("mine", src, out=tmp_path / "out.zip", resolution=8)
    assert report.images == 4 and report.skipped == ["1.png (NotImplementedError)"]
    result = CliRunner().invoke(main, ["eval", "--real", str(noise_images(tmp_path / "real", 20, 0)), "--fake",
                                       str(src), "--feature-extractor", channel_stats_extractor(), "--no-cache",
                                       "--data-root", str(tmp_path / "root")])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "image '1.png'" in result.output and "cannot be read (NotImplementedError" in result.output


@pytest.mark.parametrize("manifest", [b"[1, 2]", b'{"settings": {}, "images": "many"}', b"\xff not json",
                                      "unknown compression"])
def test_a_planted_zip_with_a_broken_manifest_at_the_output_is_rebuilt(tmp_path, manifest):
    import zipfile

    src, out = noise_images(tmp_path / "src", 3, 0), tmp_path / "out.zip"
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("diffaug_noise.json", b"{}" if manifest == "unknown compression" else manifest)
    if manifest == "unknown compression":
        _unknown_compression(out, 0)
    report = prepare("mine", src, out=out, resolution=8)
    assert not report.up_to_date and report.images == 3
    assert prepare("mine", src, out=out, resolution=8).up_to_date


def test_a_single_image_or_a_broken_zip_as_a_set_is_one_line(tmp_path):
    """`eval --fake one.png` ended in BadZipFile: File is not a zip file."""
    real = noise_images(tmp_path / "real", 20, 0)
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 and then nothing")
    for fake in (real / "000.png", broken):
        result = CliRunner().invoke(main, ["eval", "--real", str(real), "--fake", str(fake), "--feature-extractor",
                                           channel_stats_extractor(), "--no-cache", "--data-root", str(tmp_path / "r")])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert f"{str(fake)!r} is neither a folder nor a readable zip of images" in result.output
