"""What an adapter says about its upstream codebase, and the checks that the user's checkout is it.

:class:`Upstream` names where the code comes from, the files and names the adapter relies on, and
the commits it is tested against. :func:`locate_repo` and :func:`import_checked` fail early, with
one line saying what to do, when the checkout is missing or is not that code;
:func:`warn_if_untested` says once when it is another commit.
"""
from __future__ import annotations

import dataclasses
import importlib
import os
import pathlib
import re
import subprocess
import sys
import types
import warnings


class UpstreamError(RuntimeError):
    """The upstream checkout is missing or is not the codebase the adapter expects."""


@dataclasses.dataclass(frozen=True)
class Upstream:
    """One upstream codebase: where to get it, how to recognise it, what the adapter touches."""

    name: str  # for messages, e.g. "stylegan2-ada-pytorch"
    clone: str  # the command that gets a checkout
    env_var: str  # where --repo defaults from
    tested_commits: tuple  # full hashes the adapter is tested against
    markers: tuple  # files a checkout must have
    names: dict  # module -> attributes the adapter patches or builds on (checked before patching)
    loop_module: str = "training.training_loop"  # the module of the training loop (tick lines); one of `names`
    # Shims (module-level functions returning patches) that must be in place before upstream is
    # imported at all, e.g. a module it imports that current installs lack; applied with the shims only.
    import_shims: tuple = ()

    def __post_init__(self):
        if self.loop_module not in self.names:
            raise ValueError(f"Upstream {self.name!r}: names must list the loop module {self.loop_module!r} (the "
                             "adapter imports it in every rank to patch its tick lines and resume)")
        bad = [c for c in self.tested_commits if not re.fullmatch(r"[0-9a-f]{40}", str(c))]
        if not self.tested_commits or bad:
            raise ValueError(f"Upstream {self.name!r}: tested_commits must be full 40-hex commit hashes; got "
                             f"{list(bad or self.tested_commits)!r}")


def locate_repo(upstream: Upstream, repo=None) -> pathlib.Path:
    """The checkout to use: ``repo``, else ``$env_var``; it must hold the upstream's marker files."""
    if repo is None:
        repo = os.environ.get(upstream.env_var)
    if not repo:
        raise UpstreamError(f"no {upstream.name} checkout given: pass --repo PATH or set {upstream.env_var}; "
                            f"to get one: {upstream.clone}")
    path = pathlib.Path(repo).expanduser().resolve()
    missing = [f for f in upstream.markers if not (path / f).is_file()]
    if missing:
        raise UpstreamError(f"{str(path)!r} is not a {upstream.name} checkout (missing {', '.join(missing)}); "
                            f"to get one: {upstream.clone}")
    return path


def import_checked(upstream: Upstream, repo: pathlib.Path) -> dict[str, types.ModuleType]:
    """Import each module of ``upstream.names`` from ``repo`` and check that the names the adapter patches exist."""
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    modules, missing = {}, []
    for module_name, attributes in upstream.names.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise UpstreamError(f"cannot import {module_name} from {str(repo)!r}: {err}. Install upstream's "
                                f"requirements, or get the expected checkout: {upstream.clone}") from err
        if not str(getattr(module, "__file__", "")).startswith(str(repo)):
            raise UpstreamError(f"{module_name} was imported from {getattr(module, '__file__', '?')}, not from "
                                f"{str(repo)!r}; another package of that name shadows the checkout (run from a fresh "
                                "process)")
        missing += [f"{module_name}.{a}" for a in attributes if not hasattr(module, a)]
        modules[module_name] = module
    if missing:
        raise UpstreamError(f"{str(repo)!r} lacks {', '.join(missing)}, which the adapter patches: an incompatible "
                            f"version? The adapter is tested against: {upstream.clone}")
    return modules


def checkout_commit(repo: pathlib.Path) -> str | None:
    """The commit ``repo`` has checked out, or None when it is not the top of a git checkout (or git is missing).

    A folder inside another repository (a copy of upstream vendored into a project) is not a
    checkout of upstream: its commit says nothing about upstream's version.
    """
    try:
        result = subprocess.run(["git", "-C", str(repo), "rev-parse", "--show-toplevel", "HEAD"],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = result.stdout.split()
    if result.returncode != 0 or len(lines) != 2 or pathlib.Path(lines[0]).resolve() != pathlib.Path(repo).resolve():
        return None
    return lines[1]


def warn_if_untested(upstream: Upstream, repo: pathlib.Path) -> None:
    """One warning when ``repo`` is a git checkout at a commit the adapter was not tested against."""
    commit = checkout_commit(repo)
    if commit is not None and commit not in upstream.tested_commits:
        warnings.warn(f"{str(repo)!r} is at {upstream.name} commit {commit[:12]}; the adapter is tested against "
                      f"{', '.join(c[:12] for c in upstream.tested_commits)} (git -C {repo} checkout "
                      f"{upstream.tested_commits[0][:12]} if something breaks)", stacklevel=2)
