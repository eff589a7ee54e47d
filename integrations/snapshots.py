"""Upstream snapshots outside training: load ``network-snapshot-*.pkl`` with the checkout and shims its run used.

A snapshot of a StyleGAN-family run is a pickle that names upstream's modules (``torch_utils``,
``training``, ...): unpickling it imports them, so it needs the checkout on ``sys.path``, and on a
current install the same shims as training (stylegan3's and R3GAN's ``conv2d_gradfix`` import
``pkg_resources``, which setuptools >= 81 no longer ships; on CUDA the custom ops need
:func:`~.shims.registered_extension_patch`). :func:`load_snapshot` and :func:`snapshot_shims` find the
checkout the way ``diffaug-noise run`` does and apply its adapter's shims (:meth:`~.adapter.Adapter.baseline`).

The checkout, first found of:

1. ``repo`` (CLI ``--repo``);
2. the run record ``diffaug-noise-run.json`` that every ``diffaug-noise run`` writes into its run folder,
   beside the snapshots (:func:`~.run_record.record_run_patch`: upstream name, checkout, commit);
3. a checkout on ``sys.path`` (``PYTHONPATH``) holding the modules the snapshot names;
4. the adapters' environment variables (``DIFFAUG_NOISE_STYLEGAN3_REPO``, ...), where exactly one is set.

The modules a snapshot names are read without unpickling (:func:`pickled_modules`); a pickle that
names none of upstream's loads as it is, no checkout needed.

Example (a pickle of plain torch objects needs no checkout):
    >>> import pickle, tempfile, torch
    >>> path = tempfile.mktemp(suffix=".pkl")
    >>> with open(path, "wb") as f:
    ...     pickle.dump({"G_ema": torch.nn.Linear(2, 2)}, f)
    >>> "torch.nn.modules.linear" in pickled_modules(path)  # the class of G_ema, found without unpickling
    True
    >>> type(load_snapshot(path)["G_ema"]).__name__
    'Linear'
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import pathlib
import pickle
import pickletools
import zipfile

from diffaug_noise.checkpoint import CheckpointError, load_checkpoint

from .run_record import RUN_RECORD
from .spec import UpstreamError

_STRINGS = ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING")
_GETS = ("GET", "BINGET", "LONG_BINGET")
_PUTS = ("PUT", "BINPUT", "LONG_BINPUT")


def pickled_modules(path) -> set[str]:
    """The modules whose classes or functions the pickle at ``path`` names, read without unpickling it.

    A plain pickle (upstream's snapshots) or ``torch.save``'s zip (its ``data.pkl``).
    """
    path = pathlib.Path(path)
    with contextlib.ExitStack() as stack:
        if zipfile.is_zipfile(path):
            archive = stack.enter_context(zipfile.ZipFile(path))
            members = [n for n in archive.namelist() if n.endswith("data.pkl")]
            if not members:
                return set()
            f = stack.enter_context(archive.open(members[0]))
        else:
            f = stack.enter_context(open(path, "rb"))
        return _modules_of(f)


def _modules_of(f) -> set[str]:
    modules, recent, memo = set(), [None, None], {}
    try:
        for opcode, arg, _ in pickletools.genops(f):
            name = opcode.name
            if name in ("GLOBAL", "INST"):
                modules.add(arg.split(" ")[0])
            elif name == "STACK_GLOBAL" and isinstance(recent[-2], str):
                modules.add(recent[-2])
            if name in _STRINGS:
                recent.append(arg if isinstance(arg, str) else arg.decode("latin-1"))
            elif name in _GETS:
                recent.append(memo.get(arg))
            elif name in _PUTS:
                memo[arg] = recent[-1]
            elif name == "MEMOIZE":
                memo[len(memo)] = recent[-1]
            elif name not in ("FRAME", "PROTO"):
                recent.append(None)
            del recent[:-2]
    except (ValueError, EOFError) as err:
        raise UpstreamError(f"{getattr(f, 'name', 'the snapshot')!r} is not a readable pickle ({err})") from err
    return modules


def _adapters():
    from .adapter import ADAPTERS  # filled by the package, which every import of this module runs first

    return [ADAPTERS[name] for name in ADAPTERS]


def _upstream_roots() -> set[str]:
    """The top-level module names of every adapter's upstream codebase (``training``, ``torch_utils``, ...)."""
    return {module.split(".")[0] for adapter in _adapters() for module in adapter.upstream.names}


def adapter_of_checkout(repo) -> object | None:
    """The adapter whose upstream ``repo`` is a checkout of (all its marker files there; the most specific), or None."""
    path = pathlib.Path(repo).expanduser()
    matches = [a for a in _adapters() if all((path / marker).is_file() for marker in a.upstream.markers)]
    return max(matches, key=lambda a: len(a.upstream.markers), default=None)


def snapshot_checkout(path, repo=None):
    """``(adapter, checkout)`` for the snapshot at ``path``, or ``(None, None)`` when it names no upstream module.

    See the module docstring for where the checkout is looked for; fails with one line saying how to give it.
    """
    path = pathlib.Path(path).expanduser()
    if not path.is_file():
        raise UpstreamError(f"snapshot {str(path)!r} does not exist")
    needed = sorted(m for m in {m.split(".")[0] for m in pickled_modules(path)} if m in _upstream_roots())
    if repo is None and not needed:
        return None, None
    candidates = [("--repo", repo)] if repo is not None else _found_checkouts(path, needed)
    for source, candidate in candidates:
        adapter = adapter_of_checkout(candidate)
        if adapter is None:
            known = ", ".join(sorted({a.upstream.name for a in _adapters()}))
            raise UpstreamError(f"{source} {str(candidate)!r} is not a checkout of an upstream diffaug-noise knows "
                                f"({known}); pass --repo PATH (Python: repo=PATH), the checkout that trained "
                                f"{path.name}")
        return adapter, pathlib.Path(candidate).expanduser().resolve()
    names = ", ".join(sorted({a.upstream.name for a in _adapters()}))
    raise UpstreamError(f"{str(path)!r} needs upstream's code (it names module(s) {', '.join(needed)}) and no checkout "
                        f"was found for it: pass --repo PATH (Python: load_snapshot(path, repo=PATH)), the {names} "
                        f"checkout that trained it; runs of diffaug-noise record theirs in {RUN_RECORD} beside the "
                        "snapshots")


def _found_checkouts(path: pathlib.Path, needed: list) -> list:
    """Where a checkout is recorded or found, in the module docstring's order: ``[(source, path)]``."""
    record = path.parent / RUN_RECORD
    if record.is_file():
        try:
            recorded = json.loads(record.read_text()).get("repo")
        except (OSError, ValueError, AttributeError):
            recorded = None
        if isinstance(recorded, str) and pathlib.Path(recorded).is_dir():
            return [(f"the checkout recorded in {str(record)!r}", recorded)]
    for module in needed:
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.origin not in (None, "built-in", "frozen"):
            origin = pathlib.Path(spec.origin)
            root = origin.parent.parent if origin.name == "__init__.py" else origin.parent
            if adapter_of_checkout(root) is not None:
                return [(f"the checkout on sys.path ({module})", str(root))]
    set_vars = sorted({(a.upstream.env_var, os.environ[a.upstream.env_var]) for a in _adapters()
                       if os.environ.get(a.upstream.env_var)})
    return [(f"${set_vars[0][0]}", set_vars[0][1])] if len(set_vars) == 1 else []


@contextlib.contextmanager
def snapshot_shims(path, repo=None):
    """While the block runs: the checkout that wrote the snapshot at ``path`` importable, its adapter's shims applied.

    Loading and running its networks (``G_ema(z, c)``, on CUDA with upstream's custom ops) then work as in
    training. Yields the checkout (None for a pickle that names no upstream module: nothing is applied).
    """
    adapter, checkout = snapshot_checkout(path, repo)
    if adapter is None:
        yield None
        return
    with adapter.baseline(checkout):
        yield checkout


def load_snapshot(path, repo=None) -> dict:
    """Load an upstream training snapshot (``network-snapshot-*.pkl``): upstream's dict (``G``, ``D``, ``G_ema``, ...).

    Through upstream's own ``legacy.load_network_pkl`` where the checkout has it (else ``pickle``),
    with the checkout found and the shims applied by :func:`snapshot_shims`; ``repo`` is the
    checkout (default: recorded by the run, see the module docstring). The networks then run on the
    CPU as they are; on CUDA with upstream's custom ops, call them inside ``with snapshot_shims(path,
    repo)``. Unpickling runs code named in the file: only for files you trust.

    Example: ``G = load_snapshot("runs/00000-.../network-snapshot-000004.pkl")["G_ema"]``, then
    ``G(torch.randn(1, G.z_dim), torch.zeros(1, G.c_dim))``.
    """
    path = pathlib.Path(path).expanduser()
    with snapshot_shims(path, repo) as checkout:
        try:
            if checkout is not None and (checkout / "legacy.py").is_file():
                with open(path, "rb") as f:
                    return importlib.import_module("legacy").load_network_pkl(f)
            return load_checkpoint(path, trust_pickle=True)
        except CheckpointError as err:
            raise UpstreamError(str(err)) from err
        except (pickle.UnpicklingError, EOFError, AssertionError) as err:
            raise UpstreamError(f"{str(path)!r} is not an upstream snapshot ({type(err).__name__}: {err})") from err


__all__ = ["RUN_RECORD", "adapter_of_checkout", "load_snapshot", "pickled_modules",
           "snapshot_checkout", "snapshot_shims"]
