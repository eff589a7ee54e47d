"""Tune at equal effort, then report on held-out seeds: a digits study as one call, spread over worker processes.

"Does the layer beat tuned instance noise?" is answered in two phases, per training-set size:

1. **tuning**: every tunable method trains each of its candidate settings (the same number for every
   method: equal effort) on the tuning seeds; per method the candidate with the lowest median final
   FD_digits wins, ties to the lower maximum;
2. **report**: every method at its chosen setting trains on the report seeds, which tuning never saw.

Each (size, method, setting, chunk of seeds) is one job of :func:`~.train.train_digits`, and the
jobs run in a pool of worker processes. A member of the batched ensemble does not depend on which
others share its batch (seed ``s`` draws the same subset, weights, minibatches and latents in any
job), so splitting the work changes no number, only the wall time.

With a time budget, the iterations are chosen by calibration: every job of both phases runs
``calibration_iterations`` first, and its per-iteration and per-evaluation seconds (means of the
time between steps) and its start-up give each phase's time on the pool for any length; the
longest run, in whole evaluation intervals, that fits the budget is trained (``max_iterations`` at
most). Timing decides only how long the runs are, never a result.

Example (a CPU-sized study: two sizes, three methods, one candidate for instance noise):
    >>> study = run_study(StudySettings(train_sizes=(30,), tune_seeds=(100,), report_seeds=(0,),
    ...                                 methods=("plain", "instance"), grid={"instance": ({"instance_sigma": 0.3},)},
    ...                                 iterations=4, workers=0),
    ...                   base=dict(net="conv", resolution=16, width=2, eval_every=2, eval_samples=20, batch_size=8))
    >>> study["chosen"]["30"]["instance"], sorted(r["method"] for r in study["report"]["30"]["runs"])
    ({'instance_sigma': 0.3}, ['instance', 'plain'])
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import heapq
import multiprocessing
import statistics
import time
from typing import Callable

from .train import DigitsSettings, train_digits

# Three candidates per tunable method, around the 16 px conv study's choices (docs/digits.md), for the conv networks at
# 32 px. diffaugment+diffusion keeps the DiffAugment the conv study chose and varies the noise, as that study did.
CONV_GRID = {
    "instance": ({"instance_sigma": 0.15}, {"instance_sigma": 0.3}, {"instance_sigma": 0.6}),
    "diffaugment": ({"translation": 0.0625, "cutout": 0.25}, {"translation": 0.125, "cutout": 0.25},
                    {"translation": 0.0625, "cutout": 0.0}),
    "diffusion": ({"sigma": 0.5, "target": 0.3}, {"sigma": 0.5, "target": 0.6}, {"sigma": 0.25, "target": 0.3}),
    "diffusion-fixed": ({"fixed_T": 25}, {"fixed_T": 50}, {"fixed_T": 100}),
    "diffaugment+diffusion": ({"sigma": 0.2, "target": 0.3}, {"sigma": 0.5, "target": 0.3},
                              {"sigma": 0.2, "target": 0.6}),
}
CALIBRATION_SETTLE = 3  # steps left out of the calibration medians (cuDNN choices, the noise kernel's compile)


@dataclasses.dataclass(frozen=True)
class StudySettings:
    """What a study trains; the networks and everything else come from ``base`` (:class:`~.train.DigitsSettings`)."""

    train_sizes: tuple = (100, 500)  # training digits per seed, one study per size
    tune_seeds: tuple = (100, 101)  # seeds of the tuning phase (never reported)
    report_seeds: tuple = tuple(range(10))  # seeds of the report
    methods: tuple = ("plain", "instance", "diffaugment", "diffusion", "diffusion-fixed", "diffaugment+diffusion")
    grid: dict = dataclasses.field(default_factory=lambda: dict(CONV_GRID))  # method -> candidate settings
    iterations: int | None = None  # fixed length; None: calibrate to `budget_seconds`
    budget_seconds: float = 300.0  # both phases together, when calibrating
    max_iterations: int = 10_000  # the calibrated length's ceiling
    min_iterations: int = 500  # ... and floor (a budget too small for it is an error, not a shorter study)
    calibration_iterations: int = 24
    seeds_per_job: int = 5  # report seeds per job (tuning jobs hold one candidate's tuning seeds)
    workers: int = 4  # worker processes (0: every job in this process, one after another)

    def __post_init__(self):
        tunable = [m for m in self.methods if m != "plain"]
        counts = {m: len(self.grid.get(m, ())) for m in tunable}
        if any(n == 0 for n in counts.values()) or len(set(counts.values())) > 1:
            raise ValueError(f"every tunable method needs the same number (>= 1) of candidates, equal effort; got "
                             f"{counts}")
        if set(self.tune_seeds) & set(self.report_seeds):
            raise ValueError(f"tune_seeds {self.tune_seeds} and report_seeds {self.report_seeds} overlap; the report "
                             f"must be on seeds tuning never saw")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0 (0: jobs run in this process); got {self.workers}")
        for name in ("seeds_per_job", "calibration_iterations", "min_iterations"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.calibration_iterations <= CALIBRATION_SETTLE + 1:
            raise ValueError(f"calibration_iterations must exceed {CALIBRATION_SETTLE + 1}; got "
                             f"{self.calibration_iterations}")


@dataclasses.dataclass(frozen=True)
class Job:
    """One call of :func:`~.train.train_digits`: a method at one setting, on some seeds, at one training-set size."""

    phase: str  # "tuning" or "report"
    train_size: int
    method: str
    setting: tuple  # sorted (name, value) pairs overriding the base config
    seeds: tuple

    def config(self, base: dict, **overrides) -> DigitsSettings:
        return DigitsSettings(**{**base, "train_size": self.train_size, "methods": (self.method,), "seeds": self.seeds,
                               **dict(self.setting), **overrides})


def _key(setting: dict) -> tuple:
    return tuple(sorted(setting.items()))


def label(setting) -> str:
    """A setting as text: ``instance_sigma=0.3``, or ``default``.

    Example:
        >>> label({"sigma": 0.5, "target": 0.3})
        'sigma=0.5 target=0.3'
    """
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in dict(setting).items()) or "default"


def tuning_jobs(settings: StudySettings) -> list:
    """Every candidate of every tunable method on the tuning seeds, per size (plain has nothing to tune)."""
    return [Job("tuning", size, m, _key(candidate), tuple(settings.tune_seeds))
            for size in settings.train_sizes for m in settings.methods if m != "plain"
            for candidate in settings.grid[m]]


def report_jobs(settings: StudySettings, chosen: dict) -> list:
    """Every method at its chosen setting (``chosen[str(size)][method]``) on the report seeds, in chunks."""
    seeds, n = tuple(settings.report_seeds), settings.seeds_per_job
    return [Job("report", size, m, _key(chosen[str(size)].get(m, {})), seeds[i:i + n])
            for size in settings.train_sizes for m in settings.methods for i in range(0, len(seeds), n)]


def _run_job(job: Job, base: dict, overrides: dict) -> dict:
    """In a worker: train ``job``, timing each step (a calibration reads the times; a study ignores them)."""
    stamps = []
    started = time.perf_counter()
    result = train_digits(job.config(base, **overrides),
                          on_step=lambda step, scores: stamps.append(time.perf_counter()))
    result.pop("real")
    result["samples"] = {name: images.cpu() for name, images in result["samples"].items()}  # no CUDA IPC handles
    return {"job": dataclasses.asdict(job), "result": result, "stamps": stamps, "started": started,
            "seconds": time.perf_counter() - started}


def run_jobs(jobs: list, base: dict, workers: int, on_done: Callable[[dict], None] | None = None,
             **overrides) -> list:
    """Run ``jobs`` on ``workers`` processes (spawned: CUDA-safe; 0: in this process), longest-looking first;
    results in ``jobs``' order. ``on_done`` sees each job's output as it finishes.
    """
    order = sorted(range(len(jobs)), key=lambda i: -len(jobs[i].seeds))
    out = [None] * len(jobs)
    if workers == 0:
        for i in order:
            out[i] = _run_job(jobs[i], base, overrides)
            if on_done is not None:
                on_done(out[i])
        return out
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = {pool.submit(_run_job, jobs[i], base, overrides): i for i in order}
        for future in concurrent.futures.as_completed(futures):
            out[futures[future]] = future.result()
            if on_done is not None:
                on_done(out[futures[future]])
    return out


def step_costs(output: dict, eval_every: int) -> dict:
    """A calibration job's seconds: start-up (before its first step), per iteration, and per evaluation."""
    stamps = output["stamps"]
    steps = [b - a for a, b in zip(stamps[:-1], stamps[1:])]  # steps[i]: step i + 2
    settled = list(enumerate(steps, start=2))[CALIBRATION_SETTLE:]
    plain = [s for step, s in settled if step % eval_every]
    evals = [s for step, s in settled if step % eval_every == 0]
    # means, not medians: on a GPU the steps that sync (the controller's update, the history) wait for the others
    per_iteration = statistics.fmean(plain)
    per_eval = max(0.0, statistics.fmean(evals) - per_iteration) if evals else 0.0
    return {"startup": stamps[0] - output["started"], "iteration": per_iteration, "evaluation": per_eval}


def schedule_seconds(job_seconds: list, workers: int) -> float:
    """Wall time of jobs taken longest first by the first free of ``workers`` (the pool's greedy order).

    Example:
        >>> schedule_seconds([4.0, 3.0, 3.0, 2.0], workers=2)
        6.0
    """
    free = [0.0] * workers
    for seconds in sorted(job_seconds, reverse=True):
        heapq.heappush(free, heapq.heappop(free) + seconds)
    return max(free)


def job_seconds(cost: dict, iterations: int, eval_every: int) -> float:
    """A job's seconds for ``iterations`` at ``eval_every`` from its calibration costs (:func:`step_costs`)."""
    return cost["startup"] + iterations * cost["iteration"] + (iterations // eval_every) * cost["evaluation"]


def calibrated_iterations(costs: list, workers: int, budget: float, eval_every: int, low: int, high: int,
                          pool_seconds: float = 0.0) -> tuple:
    """The longest run in whole ``eval_every`` that fits ``budget`` on the pool, and its estimated seconds.

    ``costs``: per job, :func:`step_costs` plus its ``phase``; ``pool_seconds``: what starting a pool
    costs beyond its jobs (spawning the workers), paid once per phase.
    """
    def estimate(n):
        return sum(pool_seconds + schedule_seconds([job_seconds(c, n, eval_every) for c in costs
                                                    if c["phase"] == phase], max(workers, 1))
                   for phase in ("tuning", "report"))

    n = high - high % eval_every
    while n > low and estimate(n) > budget:
        n -= eval_every
    if estimate(n) > budget:
        raise ValueError(f"a {n}-iteration study needs ~{estimate(n):.0f} s, over the budget of {budget:.0f} s; "
                         f"give more time, fewer seeds or sizes, or more workers")
    return n, estimate(n)


def choose(outputs: list) -> dict:
    """Per size and method, the tuning candidate with the lowest median final FD_digits (ties: lower maximum)."""
    finals: dict = {}
    for out in outputs:
        job = out["job"]
        scores = [r["score"] for r in out["result"]["runs"]]
        finals.setdefault(str(job["train_size"]), {}).setdefault(job["method"], []).append(
            (statistics.median(scores), max(scores), dict(job["setting"])))
    return {size: {m: min(c, key=lambda x: x[:2])[2] for m, c in per_method.items()}
            for size, per_method in finals.items()}


def _merge(outputs: list) -> dict:
    """Per size: the runs (with their setting), and histories and samples keyed ``method/seedK`` (tuning, where a
    method has several settings: ``method[setting]/seedK``)."""
    merged: dict = {}
    for out in outputs:
        job, result = out["job"], out["result"]
        size = merged.setdefault(str(job["train_size"]), {"runs": [], "history": {}, "samples": {}})
        tag = (lambda name: name) if job["phase"] == "report" else (
            lambda name: name.replace("/", f"[{label(job['setting'])}]/", 1))
        for run in result["runs"]:
            size["runs"].append({**run, "setting": dict(job["setting"])})
        history = result["history"]
        for key in ("iteration", "score_iteration"):
            size["history"][key] = history[key]
        for key in ("T", "r_d", "score"):
            size["history"].setdefault(key, {}).update({tag(k): v for k, v in history[key].items()})
        size["samples"].update({tag(k): v for k, v in result["samples"].items()})
    return merged


def run_study(settings: StudySettings, base: dict, on_phase: Callable[[str, dict], None] | None = None) -> dict:
    """Tune, then report (see the module docstring); ``on_phase(name, partial_study)`` after each phase.

    ``base``: :class:`~.train.DigitsSettings` settings shared by every job (net, width, resolution, lr,
    device, ...). Returns the chosen settings, each phase's runs and histories, the iterations and how
    they were chosen.
    """
    base = {**base, "threads": base.get("threads", 1)}  # a worker per core
    eval_every = DigitsSettings(**base).eval_every
    study = {"settings": {k: v for k, v in dataclasses.asdict(settings).items()}, "base": base}
    iterations = settings.iterations
    if iterations is None:
        # the report's chosen settings are not known yet; its jobs cost what the same methods cost anywhere
        probe = tuning_jobs(settings) + report_jobs(settings, {str(s): {} for s in settings.train_sizes})
        n, every = settings.calibration_iterations, max(2, settings.calibration_iterations // 3)
        started = time.perf_counter()
        outputs = run_jobs(probe, base, settings.workers, iterations=n, eval_every=every)
        wall = time.perf_counter() - started
        costs = [{"phase": out["job"]["phase"], **step_costs(out, every)} for out in outputs]
        # what the pool itself cost: the calibration's wall time beyond its own jobs' schedule
        pool = max(0.0, wall - schedule_seconds([job_seconds(c, n, every) for c in costs], max(settings.workers, 1)))
        iterations, estimate = calibrated_iterations(costs, settings.workers, settings.budget_seconds, eval_every,
                                                     settings.min_iterations, settings.max_iterations, pool)
        study["calibration"] = {"seconds": wall, "pool_seconds": pool, "estimate_seconds": estimate, "costs": costs}
    study["iterations"] = iterations
    started = time.perf_counter()
    tuned = run_jobs(tuning_jobs(settings), base, settings.workers, iterations=iterations)
    study["chosen"] = choose(tuned) if tuned else {}
    for size in settings.train_sizes:
        study["chosen"].setdefault(str(size), {})["plain"] = {}
    study["tuning"] = _merge(tuned)
    study["tuning_seconds"] = time.perf_counter() - started
    if on_phase is not None:
        on_phase("tuning", study)
    started = time.perf_counter()
    study["report"] = _merge(run_jobs(report_jobs(settings, study["chosen"]), base, settings.workers,
                                      iterations=iterations))
    study["report_seconds"] = time.perf_counter() - started
    if on_phase is not None:
        on_phase("report", study)
    return study


def _span(values, fmt="{:.1f}") -> str:
    values = sorted(values)
    if not values:
        return ""
    low, mid, high = values[0], statistics.median(values), values[-1]
    return fmt.format(mid) if low == high else f"{fmt.format(mid)} [{fmt.format(low)}–{fmt.format(high)}]"


def _table(phase: dict, keyed) -> list:
    """Markdown rows, one per (method, setting): final and best FD_digits, classes, r_d and T over seeds."""
    rows = ["| method | setting | FD_digits final | FD_digits best | classes /10 | final r_d | mean T | T at t_min |",
            "|---|---|---|---|---|---|---|---|"]
    groups: dict = {}
    for run in phase["runs"]:
        groups.setdefault((run["method"], label(run["setting"])), []).append(run)
    for (method, setting), runs in groups.items():
        Ts = [phase["history"]["T"][keyed(method, setting, r["seed"])] for r in runs if r["final_T"] is not None]
        t_min = [min(T) for T in Ts]
        mean_T = _span([statistics.fmean(T) for T in Ts], "{:.0f}")
        at_floor = _span([100 * sum(v == lo for v in T) / len(T) for T, lo in zip(Ts, t_min)], "{:.0f} %")
        classes = _span([r["classes_covered"] for r in runs], "{:g}")
        rows.append(f"| {method} | {setting if method != 'plain' else ''} | {_span([r['score'] for r in runs])} | "
                    f"{_span([r['best_score'] for r in runs])} | {classes} | "
                    f"{_span([r['final_r_d'] for r in runs], '{:.2f}')} | {mean_T} | {at_floor} |")
    return rows


def format_study(study: dict) -> str:
    """The study as markdown: per size, the tuning table (the chosen setting in bold) and the report table.

    Spreads are median [min–max] over seeds; ``T at t_min`` is the share of logged iterations an
    adaptive run sat at its smallest T (for ``diffusion-fixed``, always 100 %).
    """
    lines = [f"{study['iterations']} iterations; tuning seeds {list(study['settings']['tune_seeds'])}, report seeds "
             f"{list(study['settings']['report_seeds'])}."]
    for size, report in study["report"].items():
        chosen = study["chosen"][size]
        if size in study.get("tuning", {}):
            lines += ["", f"**{size} training digits, tuning** (the chosen setting in bold)", ""]
            rows = _table(study["tuning"][size], lambda m, setting, seed: f"{m}[{setting}]/seed{seed}")
            lines += [row.replace(f"| {label(chosen[row.split('|')[1].strip()])} |",
                                  f"| **{label(chosen[row.split('|')[1].strip()])}** |", 1)
                      if row.split("|")[1].strip() in chosen else row for row in rows]
        lines += ["", f"**{size} training digits, report**", ""]
        lines += _table(report, lambda m, setting, seed: f"{m}/seed{seed}")
    return "\n".join(lines)


__all__ = ["CONV_GRID", "Job", "StudySettings", "calibrated_iterations", "choose", "format_study", "job_seconds",
           "label", "report_jobs", "run_jobs", "run_study", "schedule_seconds", "step_costs", "tuning_jobs"]
