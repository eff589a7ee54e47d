"""A data root and its sources as an attacker or an unlucky user leaves them: nothing escapes, nothing crashes.

Each test names the class of failure it guards against (docs/reliability.md lists them).
"""
import errno
import io
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from diffaug_noise.checkpoint import StorageError
from diffaug_noise.cli.main import main
from diffaug_noise.data import DatasetError, ImageDataset, prepare
from diffaug_noise.data.sources import Limits

lmdb = pytest.importorskip("lmdb")


def images(folder, n=6, size=12):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (size, size), (20 * i, 100, 200 - 20 * i)).save(folder / f"{i:03d}.png")
    return folder


@pytest.mark.parametrize("name", ["../../escaped", "/abs/name", "", "a/b", ".hidden", "-flag", "x" * 65, "a..b"])
def test_a_dataset_name_is_never_a_path(name, tmp_path):
    src = images(tmp_path / "src")
    root = tmp_path / "deep" / "root"
    with pytest.raises(DatasetError, match="is not a name"):
        prepare(name, src, data_root=root, resolution=8)
    written = [p for p in tmp_path.rglob("*.zip")]
    assert written == [] and not (tmp_path / "escaped-8x8.zip").exists()


def test_cli_refuses_a_traversal_name_in_one_line(tmp_path):
    result = CliRunner().invoke(main, ["data", "prepare", "../escaped", "--source", str(images(tmp_path / "s")),
                                       "--resolution", "8", "--data-root", str(tmp_path / "root")])
    assert result.exit_code == 1 and "is not a name" in result.output and "Traceback" not in result.output
    assert not list(tmp_path.rglob("*.zip"))


def test_symlinks_out_of_a_source_folder_are_not_followed(tmp_path):
    src = images(tmp_path / "src", n=3)
    secret = images(tmp_path / "elsewhere", n=2)
    (src / "link.png").symlink_to(secret / "000.png")  # a file outside
    (src / "linked-folder").symlink_to(secret, target_is_directory=True)  # a folder outside
    (src / "inside.png").symlink_to(src / "001.png")  # a link within the source is fine
    (src / "loop").symlink_to(src, target_is_directory=True)  # and a loop ends
    report = prepare("mine", src, out=tmp_path / "out.zip", resolution=8)
    assert report.images == 4  # 000, 001, 002 and inside.png
    assert sorted(report.outside) == ["link.png", "linked-folder"]
    result = CliRunner().invoke(main, ["data", "prepare", "mine2", "--source", str(src), "--resolution", "8",
                                       "--out", str(tmp_path / "out2.zip")])
    assert result.exit_code == 0 and "did not follow 2 symlink(s) pointing out of the source" in result.output


def test_a_zip_member_declaring_a_huge_size_is_skipped_unread(tmp_path):
    src = tmp_path / "bomb.zip"
    with zipfile.ZipFile(src, "w", compression=zipfile.ZIP_DEFLATED) as z:
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buffer, format="PNG")
        z.writestr("ok.png", buffer.getvalue())
        z.writestr("bomb.png", b"\0" * (3 * 2**20))  # 3 MiB of zeros deflate to a few KB
    assert src.stat().st_size < 100_000
    reads = []
    original = zipfile.ZipFile.read
    zipfile.ZipFile.read = lambda self, name, pwd=None: reads.append(name) or original(self, name, pwd)
    try:
        report = prepare("mine", src, out=tmp_path / "out.zip", resolution=8, max_image_bytes=2**20)
    finally:
        zipfile.ZipFile.read = original
    assert report.images == 1 and "bomb.png" not in reads
    assert report.oversized == ["bomb.png (declares 3,145,728 bytes, over the 1,048,576-byte limit "
                                "(--max-image-bytes))"]


def test_an_image_whose_header_declares_too_many_pixels_is_not_decoded(tmp_path):
    src = images(tmp_path / "src", n=2)
    Image.new("1", (4000, 3000)).save(src / "huge.png")  # a few KB on disk, 12 M pixels decoded
    assert (src / "huge.png").stat().st_size < 50_000
    report = prepare("mine", src, out=tmp_path / "out.zip", resolution=8, max_image_pixels=10**6)
    assert report.images == 2 and report.oversized[0].startswith("huge.png (4000x3000 = 12,000,000 pixels, over the")
    with pytest.raises(DatasetError, match=r"'huge.png' in .* is 4000x3000 = 12,000,000 pixels"):
        ImageDataset(src, Limits(max_image_pixels=10**6))[2]


def test_a_truncated_lmdb_is_one_error_not_a_sigbus(tmp_path):
    path = tmp_path / "church_lmdb"
    env = lmdb.open(str(path), map_size=1 << 26)
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, format="WEBP")
    with env.begin(write=True) as txn:
        for i in range(200):
            txn.put(f"{i:040x}".encode(), buffer.getvalue() + bytes(2000))
    env.close()
    data = path / "data.mdb"
    with open(data, "r+b") as f:
        f.truncate(data.stat().st_size // 3)
    script = textwrap.dedent(f"""
        from diffaug_noise.data import prepare, DatasetError
        try:
            prepare("lsun_church", {str(path)!r}, out={str(tmp_path / 'out.zip')!r}, resolution=8)
        except DatasetError as err:
            print("ERROR", err)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])  # was -7 (SIGBUS), no message
    assert "is truncated" in proc.stdout and "download or copy it again" in proc.stdout
    assert not list(tmp_path.glob(".out.zip.*"))


def test_an_edited_image_of_equal_size_makes_the_zip_stale(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):  # PPM: the size depends on the dimensions only
        Image.new("RGB", (12, 12), (20 * i, 100, 200)).save(src / f"{i:03d}.ppm")
    out = tmp_path / "out.zip"
    prepare("mine", src, out=out, resolution=8)
    before = (src / "001.ppm").stat().st_size
    Image.new("RGB", (12, 12), (1, 2, 3)).save(src / "001.ppm")  # another colour, the same size
    assert (src / "001.ppm").stat().st_size == before
    again = prepare("mine", src, out=out, resolution=8)
    assert not again.up_to_date
    with zipfile.ZipFile(out) as z:
        pixel = np.asarray(Image.open(io.BytesIO(z.read("00000/img00000001.png"))))[0, 0]
    assert pixel.tolist() == [1, 2, 3]
    assert prepare("mine", src, out=out, resolution=8).up_to_date
    assert not prepare("mine", src, out=out, resolution=8, force=True).up_to_date


def test_two_prepares_of_one_zip_at_once_the_second_names_the_first(tmp_path):
    src = images(tmp_path / "src", n=40, size=64)
    out = tmp_path / "out.zip"
    slow = textwrap.dedent(f"""
        import time, sys
        from diffaug_noise.data import prepare
        def progress(done, wanted):
            if done == 1:
                print("started", flush=True)
            time.sleep(0.05)
        prepare("mine", {str(src)!r}, out={str(out)!r}, resolution=32, on_progress=progress)
    """)
    first = subprocess.Popen([sys.executable, "-c", slow], stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "started"
        with pytest.raises(DatasetError, match=r"another data prepare of out.zip is at work \(pid \d+ on .*\)"):
            prepare("mine", src, out=out, resolution=32)
    finally:
        assert first.wait(timeout=120) == 0
    assert prepare("mine", src, out=out, resolution=32).images == 40  # the first one's complete zip, up to date


def test_a_killed_prepare_leaves_a_temp_file_that_the_next_run_removes(tmp_path):
    src = images(tmp_path / "src", n=30, size=64)
    out = tmp_path / "out.zip"
    script = textwrap.dedent(f"""
        import os, signal
        from diffaug_noise.data import prepare
        def progress(done, wanted):
            if done == 10:
                os.kill(os.getpid(), signal.SIGKILL)
        prepare("mine", {str(src)!r}, out={str(out)!r}, resolution=32, on_progress=progress)
    """)
    assert subprocess.run([sys.executable, "-c", script], timeout=120).returncode == -9
    assert len(list(tmp_path.glob(".out.zip.*.tmp"))) == 1 and not out.exists()
    assert prepare("mine", src, out=out, resolution=32).images == 30  # the killed run holds no lock
    assert list(tmp_path.glob(".out.zip.*.tmp")) == []


def test_a_full_disk_is_one_line_naming_the_zip(tmp_path, monkeypatch):
    src = images(tmp_path / "src", n=3)
    original = zipfile.ZipFile.writestr

    def full(self, name, data, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(zipfile.ZipFile, "writestr", full)
    with pytest.raises(StorageError,
                       match=r"cannot write '.*out.zip': No space left on device \(ENOSPC\); the disk is full"):
        prepare("mine", src, out=tmp_path / "out.zip", resolution=8)
    result = CliRunner().invoke(main, ["data", "prepare", "mine", "--source", str(src), "--resolution", "8",
                                       "--out", str(tmp_path / "out.zip")])
    monkeypatch.setattr(zipfile.ZipFile, "writestr", original)
    assert result.exit_code == 1 and "the disk is full" in result.output and "Traceback" not in result.output
    assert not list(tmp_path.glob("*.zip")) and not list(tmp_path.glob(".out.zip.*"))


def test_a_really_full_disk_and_a_read_only_root_are_one_line(full_disk, read_only_dir, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):  # noise does not compress: 20 x 12 KB fill the 64 KB disk
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(src / f"{i}.png")
    for root, message in ((full_disk, "No space left on device (ENOSPC); the disk is full"),
                          (read_only_dir, "(EROFS); that file system is read-only")):
        result = CliRunner().invoke(main, ["data", "prepare", "mine", "--source", str(src), "--resolution", "64",
                                           "--data-root", str(root)])
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output, result.output
        assert not list(root.glob("*.zip")) and not list(root.glob(".*.tmp"))
