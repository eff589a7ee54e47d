"""`bench upstream`'s parts that need no upstream: the noise timer and the message of a failed run."""
import time

import torch

import diffaug_noise as dn
from diffaug_noise.integrations.bench import _failure, _timed_noise


def test_the_noise_timer_leaves_out_the_first_forward_of_each_input_shape():
    """That call compiles the kernel (seconds on a GPU), which would swamp the noise's share of sec/kimg."""
    noise, original = dn.DiffusionNoise(p=0.5), dn.DiffusionNoise.forward
    with _timed_noise() as seconds:
        noise(torch.randn(4, 3, 8, 8))
        assert seconds() == 0
        noise(torch.randn(4, 3, 8, 8))
        timed = seconds()
        assert timed > 0
        noise(torch.randn(2, 3, 8, 8))  # a new shape: its first call is not timed either
        assert seconds() == timed
        last_tick = time.time()
        noise(torch.randn(2, 3, 8, 8))  # after the run's last tick: left out of its noise time
        assert seconds(until=last_tick) == timed < seconds()
    assert dn.DiffusionNoise.forward is original


def output(*streams: str) -> list:
    return "".join(streams).splitlines()


def test_the_exception_line_wins_over_a_later_warning():
    traceback = "Traceback (most recent call last):\n  File \"train.py\", line 1\n" \
                "UnboundLocalError: cannot access local variable 'feat_last'\n"
    warning = "W1128 06:05:06 torch/utils/cpp_extension.py:183] No CUDA runtime is found\n"
    assert _failure(output(traceback, warning)) == "UnboundLocalError: cannot access local variable 'feat_last'"
    oom = "torch.OutOfMemoryError: CUDA out of memory"
    assert _failure(output("", oom + "\n\n")) == oom


def test_without_an_exception_line_the_last_line_or_a_plain_note():
    assert _failure(output("tick 0 kimg 0.0\n", "Killed\n")) == "Killed"
    assert _failure(output("", "")) == "no output"


def test_custom_ops_are_read_from_upstreams_own_setup_lines():
    from diffaug_noise.integrations.bench import _custom_ops

    lines = ['Setting up PyTorch plugin "bias_act_plugin"... Done.',
             'Setting up PyTorch plugin "upfirdn2d_plugin"... ',  # a build's own output can come between the halves
             "ninja: no work to do.", "Failed!", "tick 0     kimg 0.0"]
    assert _custom_ops(lines) == {"bias_act_plugin": True, "upfirdn2d_plugin": False}
    assert _custom_ops(["tick 0     kimg 0.0"]) == {}  # the CPU, or an upstream that needs none (FastGAN)
    crashed = ['Setting up PyTorch plugin "bias_act_plugin"... ', "Traceback", 'Setting up PyTorch plugin "x"... Done.']
    assert _custom_ops(crashed) == {"x": True}  # no outcome of its own: bias_act_plugin is not counted as loaded


def test_the_noise_share_is_left_out_where_upstream_trains_in_spawned_ranks(tmp_path, monkeypatch):
    """The noise timer lives in the run's own process; with --gpus 2 the ranks are others, so no share (not 0 %)."""
    import json

    from click.testing import CliRunner

    from diffaug_noise.cli.main import main
    from diffaug_noise.integrations import bench

    def child(payload, on_tick, limit=None):  # upstream's run: its stats.jsonl, its tick lines and the noise reports
        mode, _, _, args, _, _ = json.loads(payload)
        run_dir = tmp_path / "runs" / mode / f"{len(list(tmp_path.rglob('stats.jsonl'))):05d}-run"
        run_dir.mkdir(parents=True)
        ticks = [{"Timing/sec_per_kimg": {"mean": s}, "Progress/kimg": {"mean": k}}
                 for s, k in ((9.0, 0.0), (2.0, 1.0), (2.0, 2.0), (2.0, 2.0))]
        (run_dir / "stats.jsonl").write_text("".join(json.dumps(t) + "\n" for t in ticks))
        noise = 0.5 if mode == "diffusion" else 0.0
        report = bench.NOISE_LINE + json.dumps({"noise_seconds": noise})
        return 0, [line for i in range(4) for line in (f"tick {i}", report)], False

    monkeypatch.setattr(bench, "run_child", child)
    measured, unmeasured = ("noise forward 12.50 % of the diffusion run's sec/kimg",
                            "noise forward not measured with --gpus > 1 (the ranks are processes of their own)")
    for name, gpus, share in (("one", ["--gpus", "1"], measured), ("two", ["--gpus", "2"], unmeasured),
                              ("upstream's", ["--", "--gpus=2"], unmeasured)):  # the last --gpus is upstream's
        out = tmp_path / f"bench-{name}.json"
        result = CliRunner().invoke(main, ["bench", "upstream", "stylegan2", "--data", str(tmp_path), "--outdir",
                                           str(tmp_path / "runs"),
                                            "--json", str(out), *gpus])
        assert result.exit_code == 0 and "diffusion/baseline 1.000; " + share in result.output, result.output
        assert json.loads(out.read_text())["noise_share"] == (0.125 if share == measured else None)


def test_a_run_reads_only_the_folder_it_wrote_whatever_the_file_clock(tmp_path):
    """Upstream numbers its run folders; an earlier bench's folders in the same --outdir are never this run's,
    and a new folder counts even when a network file system's clock puts its files in the past."""
    import json
    import os

    from diffaug_noise.integrations.bench import _folders, _ticks

    def write(name, *sec_per_kimg, when=None):
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        log = folder / "stats.jsonl"
        log.write_text("".join(json.dumps({"Timing/sec_per_kimg": {"mean": s}}) + "\n" for s in sec_per_kimg))
        if when is not None:
            os.utime(log, (when, when))

    write("00000-old", 1.0, 2.0)
    earlier, began = _folders(tmp_path), time.time()
    assert _ticks(tmp_path, earlier, began) == (None, [])  # nothing of this run yet
    write("00001-new", 3.0, 4.0, when=began - 3600)  # a skewed clock
    run_dir, ticks = _ticks(tmp_path, earlier, began)
    assert run_dir == str(tmp_path / "00001-new") and [t["Timing/sec_per_kimg"]["mean"] for t in ticks] == [3.0, 4.0]
    write("00000-old", 5.0)  # a folder reused by name (the stand-ins do), written during this run
    assert _ticks(tmp_path, earlier, began)[0] == str(tmp_path / "00000-old")


def test_a_run_past_its_time_limit_is_stopped_with_everything_it_started(tmp_path, monkeypatch):
    """--seconds-per-run: the run is stopped however it is stuck (here in a sleep, which no signal handler of its
    own would break), and so are the processes it started (upstream's spawned ranks, data-loader workers)."""
    import os
    import subprocess

    from diffaug_noise.integrations import bench

    pid_file = tmp_path / "grandchild.pid"
    monkeypatch.setattr(bench, "_CHILD", f"""
import subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
open({str(pid_file)!r}, "w").write(str(worker.pid))
print("tick 0", flush=True)
time.sleep(120)
""")
    ticks, began = [], time.perf_counter()
    code, lines, stopped = bench.run_child("[]", ticks.append, limit=2.0)
    assert stopped and time.perf_counter() - began < 30 and ticks == ["tick 0"] and "tick 0" in lines
    grandchild = int(pid_file.read_text())
    for _ in range(100):  # killed with the group; the init process reaps it
        if subprocess.run(["ps", "-o", "stat=", "-p", str(grandchild)], capture_output=True,
                          text=True).stdout.strip()[:1] \
                in ("", "Z"):
            break
        time.sleep(0.1)
    else:
        os.kill(grandchild, 9)
        raise AssertionError("the run's own child outlived it")
    monkeypatch.setattr(bench, "_CHILD", "import sys; print('tick 0'); sys.exit(3)")
    assert bench.run_child("[]", None, limit=None) == (3, ["tick 0"], False)  # no limit: it runs to its end
