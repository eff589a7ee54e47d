"""Writing outputs so that a crash never leaves a half-written file behind."""
from __future__ import annotations

import json
import os
import pathlib

import click
import torch

from diffaug_noise.checkpoint import write_atomic


def check_device(device: str) -> None:
    """Fail with the fix when ``--device cuda`` is asked for on a machine without CUDA."""
    if device == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter("CUDA is not available on this machine; use --device cpu", param_hint="--device")


def ensure_outdir(path: pathlib.Path) -> pathlib.Path:
    """Create ``path`` (and parents) or fail with the reason and the fix."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise click.ClickException(f"cannot create output folder {str(path)!r}: {err.strerror}; pass --outdir with a "
                                   "writable path")
    if not os.access(path, os.W_OK):
        raise click.ClickException(f"output folder {str(path)!r} is not writable; pass --outdir with a writable path")
    return path


def write_json(path: pathlib.Path, data) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, allow_nan=True)
            f.write("\n")
    write_atomic(path, write)
