"""Links a stranger plants in a shared data root or a run folder: nothing is written through them.

Each test plants a link where we write (the prepare lock, eval's cache folder, a run's samples
folder), pointing at a file or folder outside, and checks the target is untouched and the
refusal is one line naming the path.
"""
import os
import pathlib

import pytest
from click.testing import CliRunner
from PIL import Image

from diffaug_noise.checkpoint import StorageError
from diffaug_noise.cli.main import main
from diffaug_noise.data import prepare
from helpers import channel_stats_extractor, noise_images


def images(folder, n=3, size=12):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (size, size), (40 * i, 100, 200 - 40 * i)).save(folder / f"{i:03d}.png")
    return folder


@pytest.mark.parametrize("dangling", [False, True])
def test_a_planted_lock_link_is_refused_and_nothing_is_written_through_it(tmp_path, dangling):
    src, root = images(tmp_path / "src"), tmp_path / "root"
    root.mkdir()
    victim = tmp_path / "victim.txt"
    if not dangling:
        victim.write_text("precious")
    lock = root / "mine-8x8.zip.lock"
    lock.symlink_to(victim)
    with pytest.raises(StorageError, match=r"refusing to write through '.*mine-8x8.zip.lock': it is a symbolic link"):
        prepare("mine", src, data_root=root, resolution=8)
    assert (victim.read_text() == "precious") if not dangling else not victim.exists()
    assert lock.is_symlink() and not (root / "mine-8x8.zip").exists()
    result = CliRunner().invoke(main, ["data", "prepare", "mine", "--source", str(src), "--resolution", "8",
                                       "--data-root", str(root)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and "mine-8x8.zip.lock" in result.output


def test_a_planted_folder_hard_link_or_fifo_as_the_lock_is_refused(tmp_path):
    src, root = images(tmp_path / "src"), tmp_path / "root"
    (root / "mine-8x8.zip.lock").mkdir(parents=True)
    with pytest.raises(StorageError, match="a folder is there"):
        prepare("mine", src, data_root=root, resolution=8)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (root / "other-8x8.zip.lock").hardlink_to(victim)
    with pytest.raises(StorageError, match="a file with other hard links"):
        prepare("other", src, data_root=root, resolution=8)
    assert victim.read_text() == "precious"
    os.mkfifo(root / "third-8x8.zip.lock")  # opening it must not block, and writing to it is not locking
    with pytest.raises(StorageError, match="a special file is there"):
        prepare("third", src, data_root=root, resolution=8)


def test_the_lock_file_goes_when_the_prepare_ends_and_a_planted_temp_folder_is_no_crash(tmp_path):
    src, root = images(tmp_path / "src"), tmp_path / "root"
    root.mkdir()
    (root / ".mine-8x8.zip.planted.tmp").mkdir()  # named like a killed run's temporary file
    report = prepare("mine", src, data_root=root, resolution=8)
    assert report.images == 3 and not (root / "mine-8x8.zip.lock").exists()
    assert prepare("mine", src, data_root=root, resolution=8).up_to_date
    assert sorted(p.name for p in root.iterdir()) == [".mine-8x8.zip.planted.tmp", "mine-8x8.zip"]


def test_a_planted_cache_folder_link_gets_no_features_and_eval_still_scores(tmp_path):
    pytest.importorskip("torch_fidelity")
    from diffaug_noise.metrics.evaluation import evaluate

    extractor = channel_stats_extractor()
    real, fake, root = noise_images(tmp_path / "real", 6, 0), noise_images(tmp_path / "fake", 6, 1), tmp_path / "root"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root.mkdir()
    (root / "fidelity-cache").symlink_to(elsewhere, target_is_directory=True)
    with pytest.warns(UserWarning, match=r"refusing to write through '.*fidelity-cache': it is a symbolic link"):
        result = evaluate(real, fake, feature_extractor=extractor, data_root=root)
    assert result["fid"] >= 0 and list(elsewhere.iterdir()) == []
    clean = evaluate(real, fake, feature_extractor=extractor, data_root=tmp_path / "clean", cache=False)
    assert result["fid"] == pytest.approx(clean["fid"], rel=1e-9)



def test_a_planted_samples_link_in_a_run_folder_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFAUG_NOISE_DATA", str(tmp_path / "root"))
    out, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "samples").symlink_to(elsewhere, target_is_directory=True)
    result = CliRunner().invoke(main, ["run", "digits", "--iterations", "2", "--seeds", "1", "--methods", "plain",
                                       "--eval-samples", "20", "--save-samples", "--outdir", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "refusing to write through" in result.output and str(out / "samples") in result.output
    assert list(elsewhere.iterdir()) == []


def test_folder_under_refuses_a_link_between_the_root_and_the_folder(tmp_path):
    from diffaug_noise.safe_paths import folder_under

    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    elsewhere.mkdir()
    root.mkdir()
    (root / "a").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(StorageError, match=r"'.*root/a': it is a symbolic link"):
        folder_under(root, root / "a" / "b")
    assert list(elsewhere.iterdir()) == []
    (root / "file").write_text("x")
    with pytest.raises(StorageError, match="a file is there"):
        folder_under(root, root / "file" / "b")
    assert folder_under(root, root / "c" / "d") == root / "c" / "d" and (root / "c" / "d").is_dir()
    assert isinstance(pathlib.Path(folder_under(tmp_path / "new-root", tmp_path / "new-root")), pathlib.Path)
