"""What the prepare lock says: a stale lock taken over is named, and a lock file's bytes are shown as safe text."""
import fcntl
import os
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from diffaug_noise.cli.main import main
from diffaug_noise.data import prepare
from diffaug_noise.data.lock import LockedError
from helpers import noise_images


def test_a_stale_lock_of_a_killed_prepare_is_taken_over_and_said_so(tmp_path):
    src, out = noise_images(tmp_path / "src", 30, 0, size=32), tmp_path / "out.zip"
    script = textwrap.dedent(f"""
        import os, signal
        from diffaug_noise.data import prepare
        def progress(done, wanted):
            if done == 5:
                os.kill(os.getpid(), signal.SIGKILL)
        prepare("mine", {str(src)!r}, out={str(out)!r}, resolution=16, on_progress=progress)
    """)
    killed = subprocess.Popen([sys.executable, "-c", script])
    assert killed.wait(timeout=120) == -9
    with pytest.warns(UserWarning, match=rf"data prepare of out.zip: taking over the lock '.*out.zip.lock' left by a "
                                         rf"run that did not finish \(pid {killed.pid} on .*\); it was killed"):
        assert prepare("mine", src, out=out, resolution=16).images == 30
    assert not (tmp_path / "out.zip.lock").exists()
    result = CliRunner().invoke(main, ["data", "prepare", "mine", "--source", str(src), "--resolution", "16", "--out",
                                       str(out)])
    assert result.exit_code == 0 and "taking over" not in result.output  # a prepare that ended left no lock


def test_a_held_lock_is_named_in_printable_text_only(tmp_path):
    src, out = noise_images(tmp_path / "src", 3, 0), tmp_path / "out.zip"
    lock = tmp_path / "out.zip.lock"
    lock.write_bytes(b"pid 1\nError: fake second line\x1b[2J\x1b]0;owned\x07 \xff\xfe" + b"x" * 300)
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held, as by a prepare at work
        with pytest.raises(LockedError) as err:
            prepare("mine", src, out=out, resolution=8)
        message = str(err.value)
        assert "pid 1?Error: fake second line?[2J?]0;owned? ??xxx" in message
        assert all(" " <= c <= "~" for c in message) and len(message) < 300
        result = CliRunner().invoke(main, ["data", "prepare", "mine", "--source", str(src), "--resolution", "8",
                                           "--out", str(out)])
    finally:
        os.close(fd)
    assert result.exit_code == 1 and "\x1b" not in result.output and "\x07" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
