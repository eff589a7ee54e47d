"""The adapter contract and its registry: what an upstream adapter provides, and the skeleton all share.

An adapter is one module that builds an :class:`Adapter` and one line in
``integrations/__init__.py`` that registers it. From the record alone, ``diffaug-noise run NAME``
is generated (options, defaults and help included), :meth:`Adapter.run` runs the
pre-flight checks and upstream's own ``train.py``, and :meth:`Adapter.baseline` gives upstream with
the shims alone (what ``bench upstream`` compares with). What the module writes:

- an :class:`~.spec.Upstream` (where to get the code, its marker files, the names patched, the
  tested commits);
- a settings dataclass subclassing :class:`~.options.DiffusionOptions` (its knobs, documented once);
- ``entry_patches(modules, options)``: the patches that point upstream's training at the
  adapter's D and loss (given the imported upstream modules and the settings);
- ``compat_patches(...)``: its shims (:mod:`.shims`), each naming the upstream bug it fixes;
  module-level, so that spawned ranks can rebuild them.

docs/integrations.md ("Adding an adapter") has a worked skeleton and the two test patterns.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import pathlib
from typing import Callable

import torch

from diffaug_noise.registry import Registry

from .launch import (
    LAUNCHERS,
    follow_rank_zero,
    join_group,
    lost_peer,
    torchrun_env,
    torchrun_patches,
    with_world_size,
)
from .options import DiffusionOptions
from .patching import patched_attributes, spawn_patch, tick_line_patch
from .preflight import check_gpus, check_resume
from .progress import resumable_loop_patch
from .run_record import record_run_patch
from .spec import Upstream, UpstreamError, import_checked, locate_repo, warn_if_untested


def _import_patches(upstream: Upstream, shims: bool) -> list:
    """The shims that must be in place before upstream is imported (none without shims)."""
    return [patch for shim in upstream.import_shims for patch in shim()] if shims else []


def _rank_patches(upstream: Upstream, repo: str, compat_patches: Callable[[], list] | None) -> list:
    """The patches every process of a run needs: the import shims, the tick line, a loop that can resume its
    progress (where upstream's cannot), the run record (which checkout wrote the snapshots) and, with shims, the
    compatibility patches."""
    imports = _import_patches(upstream, compat_patches is not None)
    with patched_attributes(imports):
        modules = import_checked(upstream, pathlib.Path(repo))
    loop = modules[upstream.loop_module]
    return (imports + tick_line_patch(loop) + (resumable_loop_patch(loop) if upstream.loop_restarts_progress else [])
            + record_run_patch(upstream.name, repo, loop) + (compat_patches() if compat_patches is not None else []))


@contextlib.contextmanager
def patched_upstream(upstream: Upstream, repo, shims: bool, entry_patches: Callable[[dict], list],
                     compat_patches: Callable[[], list], launcher: str = "spawn"):
    """The skeleton every adapter runs; yields upstream's ``train`` module, patched until the block ends.

    Locate the checkout and import it (checking every name the adapter touches), warn once if its
    commit is untested, apply ``entry_patches(modules)`` and the per-process patches here and, through
    ``torch.multiprocessing.spawn``, in every rank upstream starts. ``compat_patches`` must be
    picklable (a module-level function or a ``functools.partial`` of one). With ``launcher="torchrun"``
    the processes exist already: :func:`~.launch.torchrun_patches` replace upstream's spawn.
    """
    path = locate_repo(upstream, repo)
    with patched_attributes(_import_patches(upstream, shims)):
        modules = import_checked(upstream, path)
    warn_if_untested(upstream, path)
    per_process = functools.partial(_rank_patches, upstream, str(path), compat_patches if shims else None)
    launch = (spawn_patch(per_process) if launcher == "spawn"
              else torchrun_patches([modules["train"], modules[upstream.loop_module]]))
    with patched_attributes(entry_patches(modules) + per_process() + launch):
        yield modules["train"]


@dataclasses.dataclass(frozen=True)
class Adapter:
    """One upstream codebase made to train Diffusion-GAN; see the module docstring for the contract."""

    name: str  # the command: diffaug-noise run NAME
    title: str  # what it trains, e.g. "Diffusion-StyleGAN2"
    upstream: Upstream  # the codebase
    options_class: type  # the settings: a DiffusionOptions subclass (its knobs become CLI options)
    entry_patches: Callable  # (modules: dict, options) -> patches pointing upstream's training at our D and loss
    compat_patches: Callable  # (options) -> a picklable zero-argument callable returning the shims' patches
    description: str  # a paragraph for --help: what is noised and how t reaches D
    example: str  # one command line, after "diffaug-noise run NAME"
    cpu_note: str = ""  # upstream flags that make a CPU (mechanics) run affordable

    @property
    def presets(self) -> tuple:
        """The presets this adapter accepts; the first is its default."""
        return dataclasses.fields(self.options_class)[0].metadata["choices"]

    def settings(self, **options) -> DiffusionOptions:
        """The adapter's settings object; unknown names fail with the list of known ones."""
        known = {f.name for f in dataclasses.fields(self.options_class)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"{self.name}: unknown option(s) {unknown}; known: {', '.join(sorted(known))}")
        return self.options_class(**options)

    @contextlib.contextmanager
    def patched(self, repo=None, shims: bool = False, launcher: str = "spawn", **options):
        """Patch upstream for Diffusion-GAN while the block runs; yields upstream's ``train`` module."""
        settings = self.settings(**options)
        with patched_upstream(self.upstream, repo, shims, functools.partial(self.entry_patches, options=settings),
                              self.compat_patches(settings), launcher) as train:
            yield train

    def baseline(self, repo=None, shims: bool = True, **options):
        """Upstream as its users run it, with only the compatibility shims (which ``options`` may configure,
        e.g. an offline backbone); yields upstream's ``train`` module. `bench upstream` times it against
        :meth:`patched`."""
        return patched_upstream(self.upstream, repo, shims, lambda modules: [],
                                self.compat_patches(self.settings(**options)))

    def run(self, upstream_args: list, repo=None, shims: bool = True, trust_pickle: bool = False,
            launcher: str = "spawn", **options) -> None:
        """Check, then run upstream's ``train.py`` main with ``upstream_args`` under :meth:`patched`.

        ``launcher="torchrun"``: this process is one rank of a torchrun job (several nodes allowed);
        ``--gpus`` becomes the world size and upstream's spawn is replaced (:mod:`.launch`). A rank whose
        peer failed stops with one :class:`UpstreamError` line (the peer's own error says why).
        """
        if launcher not in LAUNCHERS:
            raise ValueError(f"unknown launcher {launcher!r}; choose one of {', '.join(LAUNCHERS)}")
        upstream_args = [str(a) for a in upstream_args]
        self.settings(**options)  # bad settings fail before the checks look at the machine
        check_resume(upstream_args, trust_pickle)
        if launcher == "torchrun":
            upstream_args = with_world_size(upstream_args, torchrun_env()["WORLD_SIZE"])
            join_group()
        else:
            check_gpus(upstream_args, shims)
        try:
            with self.patched(repo, shims=shims, launcher=launcher, **options) as train:
                if launcher == "torchrun" and torch.distributed.get_rank() > 0:
                    follow_rank_zero(train)
                else:
                    train.main(args=upstream_args, standalone_mode=False)
        except RuntimeError as err:
            if launcher == "torchrun" and lost_peer(err):
                rank = torch.distributed.get_rank()
                torch.distributed.destroy_process_group()  # left to interpreter exit, gloo aborts (SIGABRT)
                raise UpstreamError(f"rank {rank}: stopped because another rank of the job stopped first (its error "
                                    "is above)") from None
            raise


ADAPTERS = Registry("adapter")


def register(adapter: Adapter) -> Adapter:
    """Add ``adapter`` to :data:`ADAPTERS` under its name (once); returns it."""
    if not issubclass(adapter.options_class, DiffusionOptions):
        raise TypeError(f"{adapter.name}: options_class must subclass DiffusionOptions")
    return ADAPTERS.register(adapter.name, adapter)


__all__ = ["ADAPTERS", "Adapter", "UpstreamError", "patched_upstream", "register"]
