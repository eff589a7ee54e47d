"""What Diffusion-GAN costs inside a real training loop: upstream's own ``train.py``, with and without the adapter.

:func:`bench_upstream` runs upstream twice with the same data, flags and seed, each in a fresh
process: ``baseline``, upstream with only the compatibility shims (what a user runs without this
library), and ``diffusion``, the same run through the adapter. Each run's speed is upstream's own
``Timing/sec_per_kimg`` from its ``stats.jsonl``, the median over the ticks after the first (tick 0
is one batch of warm-up: compilation, cuDNN autotuning, custom-op builds). With ``seconds_per_run``
each run is stopped after that many seconds (startup included) and measured on the ticks it logged,
so a pair of runs fits a known time whatever upstream's speed.

Inside the diffusion run every :class:`~diffaug_noise.DiffusionNoise` forward is timed (CUDA events
on a GPU, so no sync is added; the clock on a CPU), but the first per input shape and dtype, which
compiles the kernel. The noise's share is that time, up to the last tick logged, per kimg over the
run's sec/kimg. Where the loop waits on the host (small images on a fast GPU), an event pair also
counts the GPU's idle wait for the forward's launches: that is the cost the forward adds there, and
more than its kernels' time.
"""
from __future__ import annotations

import _thread
import contextlib
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

from .preflight import flag_value

MODES = ("baseline", "diffusion")

_CHILD = """
import json, os, sys
from diffaug_noise.integrations.bench import run_mode
print("BENCH " + json.dumps(run_mode(*json.loads(sys.argv[1]))), flush=True)
os._exit(0)  # a run stopped mid-tick may leave data-loader workers that would hold a normal exit
"""


@contextlib.contextmanager
def _timed_noise():
    """Time every DiffusionNoise forward but the first per input shape and dtype (which compiles the kernel);
    yields ``total(until=None)``: the seconds so far, of the forwards begun before the ``time.time()`` ``until``."""
    import torch

    from diffaug_noise.noise import DiffusionNoise

    original = DiffusionNoise.forward
    cpu_seconds, events, seen = [], [], set()  # (began at, seconds) and (began at, start event, end event)

    def forward(self, x, generator=None):
        signature = (tuple(x.shape), x.dtype, x.device)
        if signature not in seen:
            seen.add(signature)
            return original(self, x, generator)
        began = time.time()
        if x.is_cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = original(self, x, generator)
            end.record()
            events.append((began, start, end))
            return out
        clock = time.perf_counter()
        out = original(self, x, generator)
        cpu_seconds.append((began, time.perf_counter() - clock))
        return out

    def total(until: float | None = None) -> float:
        if events:
            torch.cuda.synchronize()
        kept = lambda began: until is None or began <= until  # noqa: E731
        return (sum(seconds for began, seconds in cpu_seconds if kept(began))
                + sum(s.elapsed_time(e) for began, s, e in events if kept(began)) / 1000)

    DiffusionNoise.forward = forward
    try:
        yield total
    finally:
        DiffusionNoise.forward = original


def _daemon_timer(seconds: float, fn: Callable[[], None]) -> threading.Timer:
    """A started timer calling ``fn`` after ``seconds``, which never keeps the process alive."""
    timer = threading.Timer(seconds, fn)
    timer.daemon = True
    timer.start()
    return timer


class _TimeUp(BaseException):
    """Raised in the main thread when a run's time limit is spent (a BaseException, as KeyboardInterrupt is, so
    that upstream's ``except Exception`` clauses let it through)."""


@contextlib.contextmanager
def _time_limit(seconds: float | None, spent: threading.Event):
    """Raise :class:`_TimeUp` in this process's main thread after ``seconds`` (None: never), setting ``spent``.

    A timer thread signals the main thread through SIGINT, under a handler of this block's own: a
    process started with SIGINT ignored (a background job, nohup) would otherwise never see it, and a
    real SIGINT still does what it did before.
    """
    if seconds is None:
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):
        if spent.is_set():
            raise _TimeUp
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            raise KeyboardInterrupt

    def stop():
        spent.set()
        _thread.interrupt_main(signal.SIGINT)

    signal.signal(signal.SIGINT, on_sigint)
    timer = _daemon_timer(seconds, stop)
    try:
        yield
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)


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
    return str(log.parent), [json.loads(line) for line in lines if line.endswith("}")]  # a stop mid-write leaves half a line


def run_mode(mode: str, adapter_name: str, repo: str, upstream_args: list, options: dict, shims: bool,
             seconds_per_run: float | None = None) -> dict:
    """One run of upstream's ``train.main`` in this process, stopped after ``seconds_per_run`` if given;
    returns its ticks' sec/kimg and the noise's seconds up to the last tick."""
    from . import ADAPTERS

    adapter = ADAPTERS[adapter_name]
    context = (adapter.baseline if mode == "baseline" else adapter.patched)(repo, shims=shims, **options)
    outdir = pathlib.Path(flag_value(upstream_args, "--outdir"))  # the last one given, as upstream's click takes it
    earlier, began, start = _folders(outdir), time.time(), time.perf_counter()
    stopped = threading.Event()
    with _timed_noise() as noise_seconds:
        try:
            with _time_limit(seconds_per_run, stopped), context as train:
                try:
                    train.main(args=list(upstream_args), standalone_mode=False)
                except SystemExit as exit:  # projected-gan exits 3 ("restart") when a run ends short of whole kimg
                    if exit.code not in (0, 3, None):
                        raise
        except BaseException:  # _TimeUp, or whatever upstream made of it on its way out
            if not stopped.is_set():
                raise
        wall = time.perf_counter() - start
        run_dir, ticks = _ticks(outdir, earlier, since=began)
        noise = noise_seconds(ticks[-1].get("timestamp") if ticks else None)
    return {"mode": mode, "sec_per_kimg_ticks": [t["Timing/sec_per_kimg"]["mean"] for t in ticks],
            "kimg": ticks[-1]["Progress/kimg"]["mean"] if ticks else 0.0, "train_seconds": wall, "noise_seconds": noise,
            "stopped": stopped.is_set(), "run_dir": run_dir}


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


_GRACE_SECONDS = 60  # past its time limit, a run that has not stopped (stuck in a C call, say) is killed


def _run_child(payload: str, on_tick: Callable[[str], None] | None, kill_after: float | None = None) -> tuple[int, list]:
    """One mode in a fresh Python; its tick lines go to ``on_tick`` as upstream prints them (so a run that is
    stopped early has shown its speed so far). Returns the exit code and every output line (stderr merged);
    a run still going after ``kill_after`` seconds is killed, and its last line says so."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, payload], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, start_new_session=True)

    def kill_group():
        # Its whole process group: what is left of it (ranks spawned by upstream, data-loader workers of a run
        # stopped at its time limit, all of it if this process was interrupted) must not hold the GPU.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    killed = threading.Event()

    def kill_late():
        killed.set()
        kill_group()

    backstop = None if kill_after is None else _daemon_timer(kill_after, kill_late)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if on_tick is not None and line.startswith("tick "):
                on_tick(lines[-1])
        code = proc.wait()
        if killed.is_set():
            lines.append(f"TimeoutError: still running {kill_after:g} s after it began, {_GRACE_SECONDS} s past its "
                         f"time limit; killed")
        return code, lines
    finally:
        if backstop is not None:
            backstop.cancel()
        kill_group()
        proc.wait()


def bench_upstream(adapter_name: str, repo, upstream_args: list, outdir, shims: bool = True,
                   on_tick: Callable[[str, str], None] | None = None, seconds_per_run: float | None = None,
                   **options) -> dict:
    """Run upstream with and without the adapter (fresh processes, same arguments); sec/kimg, ratio, noise share.

    ``on_tick(mode, line)`` receives each tick line upstream prints, while it runs. ``seconds_per_run``
    stops each run after that many seconds, startup included (None: each runs its ``--kimg``).
    """
    from . import ADAPTERS

    if adapter_name not in ADAPTERS:
        raise ValueError(f"unknown adapter {adapter_name!r}; choose one of {', '.join(ADAPTERS)}")
    if seconds_per_run is not None and not seconds_per_run > 0:
        raise ValueError(f"seconds_per_run must be positive (or None for no limit); got {seconds_per_run!r}")
    ADAPTERS[adapter_name].settings(**options)  # bad settings fail before anything runs
    upstream_args = [str(a) for a in upstream_args]
    runs = {}
    for mode in MODES:
        args = ["--outdir", str(pathlib.Path(outdir) / mode), *upstream_args]
        payload = json.dumps([mode, adapter_name, None if repo is None else str(repo), args, options, shims,
                              seconds_per_run])
        code, lines = _run_child(payload, None if on_tick is None else functools.partial(on_tick, mode),
                                 kill_after=None if seconds_per_run is None else seconds_per_run + _GRACE_SECONDS)
        results = [line for line in lines if line.startswith("BENCH ")]
        if code != 0 or not results:
            raise RuntimeError(f"the {mode} run of {adapter_name} failed: {_failure(lines)} "
                               f"(upstream's log.txt is under {args[1]})")
        run = dict(json.loads(results[-1][len("BENCH "):]), custom_ops=_custom_ops(lines))
        after_warmup = run["sec_per_kimg_ticks"][1:]
        if not after_warmup:  # checked before the next run: the same arguments would give it no more ticks
            logged = "only the warm-up tick" if run["sec_per_kimg_ticks"] else "no tick"
            if run["stopped"]:
                raise RuntimeError(f"the {mode} run was stopped at its {seconds_per_run:g} s limit after logging {logged}; "
                                   f"give it more seconds per run, or smaller ticks (two at least)")
            raise RuntimeError(f"the {mode} run logged {logged}; give upstream more --kimg (at least two ticks)")
        runs[mode] = dict(run, sec_per_kimg=statistics.median(after_warmup))
    diffusion = runs["diffusion"]
    # With several GPUs upstream trains in spawned ranks, which the noise timer (patched in this run's own
    # process) never reaches: there is no share to report, rather than a share of zero.
    one_process = int(flag_value(upstream_args, "--gpus") or 1) == 1
    return {"adapter": adapter_name, "upstream_args": upstream_args, "runs": runs,
            "ratio": diffusion["sec_per_kimg"] / runs["baseline"]["sec_per_kimg"],
            "noise_share": diffusion["noise_seconds"] / diffusion["kimg"] / diffusion["sec_per_kimg"] if one_process else None}
