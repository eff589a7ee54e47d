"""What the demo commands print and record beside their numbers: spreads over seeds and the machine."""
from __future__ import annotations

import datetime
import platform

import torch

from .io import write_json


def span(stat: dict, fmt) -> str:
    """``median [min-max]`` of a summary entry, or the median alone when every seed agrees."""
    if stat["min"] == stat["max"]:
        return fmt(stat["median"])
    return f"{fmt(stat['median'])} [{fmt(stat['min'])}-{fmt(stat['max'])}]"


def write_metrics(out_dir, result: dict, keys, threads: int, device: str):
    """``out_dir/metrics.json``: the ``keys`` of a run's result plus :func:`environment`; returns its path."""
    path = out_dir / "metrics.json"
    write_json(path, {**{key: result[key] for key in keys}, "environment": environment(threads, device)})
    return path


def environment(threads: int, device: str) -> dict:
    """The date, machine and software a result was measured with (stored in metrics.json)."""
    return {
        "date": datetime.date.today().isoformat(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": threads,
        "device": device,
    }
