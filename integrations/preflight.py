"""Checks that run before anything heavy starts, each failing with one line that names the fix.

Tried as a new user would, these used to fail late: ``--gpus 4`` on a machine with fewer GPUs
gave a 200-line NCCL traceback after 30 s, and a truncated ``--resume`` snapshot an
``UnpicklingError`` plus a DataLoader traceback.
"""
from __future__ import annotations

import pathlib
import pickletools

import torch

from .spec import UpstreamError


def flag_value(args: list, flag: str) -> str | None:
    """The value of ``flag`` in an argument list (``--flag V`` or ``--flag=V``), the last one winning."""
    value = None
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
    return value


def check_gpus(upstream_args: list, shims: bool) -> None:
    """``--gpus N`` must not ask for more CUDA devices than there are; without CUDA only the CPU shims run."""
    value = flag_value(upstream_args, "--gpus")
    try:
        gpus = 1 if value is None else int(value)
    except ValueError:
        raise UpstreamError(f"--gpus must be a whole number; got {value!r}") from None
    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if found == 0 and gpus == 1:
        if not shims:
            raise UpstreamError("this machine has no CUDA device and upstream's training loop assumes one; "
                                "keep --shims (the default) to run it on the CPU, for checking mechanics")
        return
    if gpus > found:
        names = f" ({', '.join(torch.cuda.get_device_name(i) for i in range(found))})" if found else ""
        raise UpstreamError(f"--gpus {gpus} asks for {gpus} CUDA devices; this machine has {found}{names}: "
                            f"pass --gpus {max(found, 1)} or run where there are {gpus}")


def check_resume(upstream_args: list, trust_pickle: bool) -> None:
    """A ``--resume`` snapshot needs ``--trust-pickle`` and, if it is a local file, must be a complete pickle.

    The file is read with :mod:`pickletools`, which walks the opcodes without importing or
    calling anything, so a truncated or garbage file is refused before upstream unpickles it.
    Names and URLs upstream resolves itself (``ffhq256``, ``https://...``) are passed through.
    """
    value = flag_value(upstream_args, "--resume")
    if value is None or value == "noresume":
        return
    if not trust_pickle:
        raise UpstreamError("--resume loads an upstream network pickle, and unpickling runs code named in the file; "
                            "pass --trust-pickle if you trust it (e.g. your own snapshot)")
    if "://" in value:
        return
    path = pathlib.Path(value).expanduser()
    if not path.exists():
        if path.suffix or "/" in value:
            raise UpstreamError(f"--resume {value!r} does not exist; pass the path of a network-snapshot-*.pkl")
        return  # a name upstream knows (e.g. ffhq256)
    try:
        with open(path, "rb") as f:
            for _ in pickletools.genops(f):
                pass
    except Exception as err:  # any failure to walk the opcodes: not a whole pickle
        raise UpstreamError(f"--resume {value!r} is not a readable snapshot ({type(err).__name__}: {err}); "
                            f"is it truncated? Pass an intact network-snapshot-*.pkl") from None
