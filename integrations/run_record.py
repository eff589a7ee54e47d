"""The record every ``diffaug-noise run`` leaves beside its snapshots: which upstream checkout wrote them.

:mod:`.snapshots` reads it to load a snapshot with the checkout and shims its run used.
"""
from __future__ import annotations

import functools
import json
import os
import pathlib

from diffaug_noise.checkpoint import write_atomic

from .patching import Wrap
from .spec import checkout_commit

RUN_RECORD = "diffaug-noise-run.json"  # in every run folder: which upstream checkout wrote its snapshots


def record_run_patch(upstream_name: str, repo: str, loop_module) -> list:
    """Make rank 0 of ``loop_module.training_loop`` write :data:`RUN_RECORD` into its ``run_dir`` before training.

    A :class:`~.patching.Wrap`, so it composes with the resumable loop and the shims.
    """
    def wrap(original):
        @functools.wraps(original)
        def training_loop(*args, **kwargs):
            run_dir = kwargs.get("run_dir")
            if run_dir is not None and kwargs.get("rank", 0) == 0 and os.path.isdir(run_dir):
                record = {"upstream": upstream_name, "repo": repo, "commit": checkout_commit(pathlib.Path(repo))}
                write_atomic(pathlib.Path(run_dir) / RUN_RECORD,
                             lambda tmp: pathlib.Path(tmp).write_text(json.dumps(record, indent=2) + "\n"))
            return original(*args, **kwargs)
        return training_loop

    return [(loop_module, "training_loop", Wrap(wrap))]


__all__ = ["RUN_RECORD", "record_run_patch"]
