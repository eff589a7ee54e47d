"""What Diffusion-GAN costs inside a real training loop: upstream's own ``train.py``, with and without the adapter.

:func:`bench_upstream` runs upstream twice with the same data, flags and seed, each in a fresh
process: ``baseline``, upstream with only the compatibility shims (what a user runs without this
library), and ``diffusion``, the same run through the adapter. Each run's speed is upstream's own
``Timing/sec_per_kimg`` from its ``stats.jsonl``, the median over the ticks after the first (tick 0
is one batch of warm-up: compilation, cuDNN autotuning, custom-op builds). With ``seconds_per_run``
each run is stopped after that many seconds (startup included): the child process is started in a
session of its own, waited for with a timeout, and then its whole process group is killed (its
spawned ranks and data-loader workers too); it is measured on the ticks it logged, so a pair of runs
fits a known time whatever upstream's speed.

Inside the diffusion run every :class:`~diffaug_noise.DiffusionNoise` forward is timed
(:class:`~diffaug_noise.benchmark.Stopwatch` without syncs: CUDA events on a GPU, the clock on a CPU),
but the first per input shape and dtype, which compiles the kernel. After each tick line upstream
prints, the child reports the noise seconds so far on its own stdout, so a run stopped at its limit
has reported the noise of every tick it logged. The noise's share is that time, up to the last tick
logged, per kimg over the run's sec/kimg. Where the loop waits on the host (small images on a fast
GPU), an event pair also counts the GPU's idle wait for the forward's launches: that is the cost the
forward adds there, and more than its kernels' time.
"""
from __future__ import annotations

import builtins
import contextlib
import dataclasses
import functools
import json
import os
import pathlib
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from typing import Callable

from diffaug_noise.knobs import check_knobs, knob

from .patching import Wrap, patched_attributes
from .preflight import flag_value


@dataclasses.dataclass(frozen=True)
class UpstreamBench:
    """Which adapter :func:`bench_upstream` times, and for how long (``bench upstream``'s own options)."""

    adapter: str = knob("stylegan2", "A registered adapter (`diffaug-noise run --help` lists them).", kind=str)
    seconds_per_run: float = knob(None, "Stop each run after this many seconds (startup included) and measure it on "
                                        "the ticks it logged, so the pair fits a known time. [default: no limit; each "
                                        "run trains its --kimg]", kind=float, minimum=0.0, exclusive_minimum=True)

    def __post_init__(self):
        check_knobs(self)


MODES = ("baseline", "diffusion")
NOISE_LINE = "BENCH-NOISE "  # the child's report after each tick line: the noise seconds so far

_CHILD = """
import json, os, sys
from diffaug_noise.integrations.bench import run_mode
run_mode(*json.loads(sys.argv[1]))
os._exit(0)  # a run's data-loader workers would hold a normal exit
"""


@contextlib.contextmanager
def _timed_noise():
    """Time every DiffusionNoise forward but the first per input shape and dtype (which compiles the kernel);
    yields ``total(until=None)``: the seconds so far, of the forwards begun before the ``time.time()`` ``until``."""
    import torch

    from diffaug_noise.benchmark import Stopwatch
    from diffaug_noise.noise import DiffusionNoise

    original = DiffusionNoise.forward
    watches, seen = {}, set()  # a Stopwatch per device, no sync per call

    def forward(self, x, generator=None):
        signature = (tuple(x.shape), x.dtype, x.device)
        if signature not in seen:
            seen.add(signature)
            return original(self, x, generator)
        watch = watches.setdefault(x.device, Stopwatch(torch.device(x.device), synced=False))
        return watch(lambda: original(self, x, generator))

    def total(until: float | None = None) -> float:
        return sum(sum(watch.seconds(until)) for watch in watches.values())

    DiffusionNoise.forward = forward
    try:
        yield total
    finally:
        DiffusionNoise.forward = original


def _folders(outdir: pathlib.Path) -> set:
    return set(outdir.iterdir()) if outdir.is_dir() else set()


def _ticks(outdir: pathlib.Path, earlier: set, since: float) -> tuple[str | None, list]:
    """The run folder this run wrote under ``outdir`` and its ``stats.jsonl`` records; none of an earlier bench.

    It is a folder not in ``earlier`` (upstream numbers its runs; a clock skew between this machine and
    a network file system cannot hide it) or one reused by name whose ``stats.jsonl`` was written at
    ``since`` (a ``time.time()``) or later.
    """
    logs = [p / "stats.jsonl" for p in _folders(outdir)]
    logs = [log for log in logs if log.is_file() and (log.parent not in earlier or log.stat().st_mtime >= since)]
    if not logs:
        return None, []
    log = max(logs, key=lambda log: log.stat().st_mtime)
    lines = log.read_text().splitlines()
    # a stop mid-write leaves half a line
    return str(log.parent), [json.loads(line) for line in lines if line.endswith("}")]


def run_mode(mode: str, adapter_name: str, repo: str, upstream_args: list, settings: dict, shims: bool) -> None:
    """One run of upstream's ``train.main`` in this process; after each tick line, the noise seconds so far."""
    from . import ADAPTERS

    adapter = ADAPTERS[adapter_name]
    context = (adapter.baseline if mode == "baseline" else adapter.patched)(repo, shims=shims, **settings)
    with _timed_noise() as noise_seconds, context as train:
        def reporting(print_):
            print_ = print_ or builtins.print

            def tick_print(*args, **kwargs):
                print_(*args, **kwargs)
                if args and isinstance(args[0], str) and args[0].startswith("tick "):  # not into upstream's log.txt
                    sys.__stdout__.write(NOISE_LINE + json.dumps({"noise_seconds": noise_seconds(time.time())}) + "\n")
                    sys.__stdout__.flush()
            return tick_print
        with patched_attributes([(sys.modules[adapter.upstream.loop_module], "print", Wrap(reporting))]):
            try:
                train.main(args=list(upstream_args), standalone_mode=False)
            except SystemExit as exit:  # projected-gan exits 3 ("restart") when a run ends short of whole kimg
                if exit.code not in (0, 3, None):
                    raise


def _custom_ops(lines: list) -> dict:
    """Upstream's CUDA ops this run set up, from its own log lines: ``{name: True (loaded) / False (failed)}``.

    Upstream's ``get_plugin`` prints ``Setting up PyTorch plugin "bias_act_plugin"... Done.`` (or
    ``Failed!``) once per process; a build's own output may come between the two halves.

    Example:
        >>> _custom_ops(['Setting up PyTorch plugin "bias_act_plugin"... Done.', 'tick 0'])
        {'bias_act_plugin': True}
    """
    setup = r'Setting up PyTorch plugin "(\w+)"\.\.\.(?:(?!Setting up PyTorch plugin).)*?(Done\.|Failed!)'
    found = re.findall(setup, "\n".join(lines), re.S)  # an outcome belongs to the nearest setup line before it
    return {name: outcome == "Done." for name, outcome in found}


def _failure(lines: list) -> str:
    """The exception a failed run ended with: the last output line that names one (warnings printed after a
    traceback are noise), else the last line."""
    lines = [line.strip() for line in lines if line.strip()]
    named = [line for line in lines if re.match(r"[\w.]+(Error|Exception|Interrupt|Exit)\b", line)]
    return (named or lines or ["no output"])[-1]


def run_child(payload: str, on_tick: Callable[[str], None] | None, limit: float | None = None) -> tuple:
    """One run of :func:`run_mode` in a fresh Python, in a session of its own, stopped after ``limit`` seconds (None:
    when it ends); ``payload`` is the JSON list of :func:`run_mode`'s arguments.

    Its tick lines go to ``on_tick`` as upstream prints them. Returns the exit code, every output line
    (stderr merged) and whether the limit stopped it. Afterwards its whole process group is killed: what
    is left of it (ranks spawned by upstream, data-loader workers) must not hold the GPU.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, payload], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, start_new_session=True)
    lines = []

    def read():
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if on_tick is not None and line.startswith("tick "):
                on_tick(lines[-1])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    stopped = False
    try:
        proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        stopped = True
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        reader.join(timeout=30)
    return proc.returncode, lines, stopped


def bench_upstream(bench: UpstreamBench, repo, upstream_args: list, outdir, shims: bool = True,
                   on_tick: Callable[[str, str], None] | None = None, **settings) -> dict:
    """Run upstream with and without the adapter (fresh processes, same arguments); sec/kimg, ratio, noise share.

    ``settings`` are the adapter's, for both runs; ``on_tick(mode, line)`` receives each tick
    line upstream prints, while it runs.
    """
    from . import ADAPTERS

    adapter_name, seconds_per_run = bench.adapter, bench.seconds_per_run
    ADAPTERS[adapter_name].settings(**settings)  # an unknown adapter or bad settings fail before anything runs
    upstream_args = [str(a) for a in upstream_args]
    runs = {}
    for mode in MODES:
        args = ["--outdir", str(pathlib.Path(outdir) / mode), *upstream_args]
        run_outdir = pathlib.Path(flag_value(args, "--outdir"))  # the last one given, as upstream's click takes it
        payload = json.dumps([mode, adapter_name, None if repo is None else str(repo), args, settings, shims])
        earlier, began, start = _folders(run_outdir), time.time(), time.perf_counter()
        code, lines, stopped = run_child(payload, None if on_tick is None else functools.partial(on_tick, mode),
                                          limit=seconds_per_run)
        wall = time.perf_counter() - start
        if not stopped and code != 0:
            raise RuntimeError(f"the {mode} run of {adapter_name} failed: {_failure(lines)} "
                               f"(upstream's log.txt is under {run_outdir})")
        run_dir, ticks = _ticks(run_outdir, earlier, since=began)
        noise = [json.loads(line[len(NOISE_LINE):])["noise_seconds"] for line in lines if line.startswith(NOISE_LINE)]
        seconds = [t["Timing/sec_per_kimg"]["mean"] for t in ticks]
        if len(seconds) < 2:  # checked before the next run: the same arguments would give it no more ticks
            logged = "only the warm-up tick" if seconds else "no tick"
            if stopped:
                raise RuntimeError(f"the {mode} run was stopped at its {seconds_per_run:g} s limit after logging "
                                   f"{logged}; give it more seconds per run, or smaller ticks (two at least)")
            raise RuntimeError(f"the {mode} run logged {logged}; give upstream more --kimg (at least two ticks)")
        runs[mode] = {"mode": mode, "sec_per_kimg_ticks": seconds, "kimg": ticks[-1]["Progress/kimg"]["mean"],
                      "train_seconds": wall,
                      "noise_seconds": noise[len(ticks) - 1] if len(noise) >= len(ticks) else 0.0,
                      "stopped": stopped, "run_dir": run_dir, "custom_ops": _custom_ops(lines),
                      "sec_per_kimg": statistics.median(seconds[1:])}
    diffusion = runs["diffusion"]
    # With several GPUs upstream trains in spawned ranks, which the noise timer (patched in this run's own
    # process) never reaches: there is no share to report, rather than a share of zero.
    one_process = int(flag_value(upstream_args, "--gpus") or 1) == 1
    return {"adapter": adapter_name, "upstream_args": upstream_args, "runs": runs,
            "ratio": diffusion["sec_per_kimg"] / runs["baseline"]["sec_per_kimg"],
            "noise_share": (diffusion["noise_seconds"] / diffusion["kimg"] / diffusion["sec_per_kimg"]
                            if one_process else None)}
