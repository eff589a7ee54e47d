"""Resume that loses nothing: upstream's image counter, tick and iteration index carried over from a snapshot.

stylegan2-ada-pytorch's ``training_loop`` (and InsGen's, StyleGAN3's and R3GAN's, forks of it)
starts every run with ``cur_nimg = 0`` (R3GAN: the snapshot's), ``cur_tick = 0`` and ``batch_idx = 0``
and takes no argument for them, so a resumed run restarts its kimg: the ``--kimg`` budget, snapshot
names, the EMA ramp-up, the phase of ADA's and lazy regularisation's every-N-iterations steps and
the logged ``Progress/kimg`` all start again. :func:`resumable_loop` recompiles upstream's function from upstream's own
source with one change: each of those three top-level assignments reads ``(resume_progress or {}).get(name, value)``,
``value`` being upstream's expression and ``resume_progress`` a new keyword argument (default
``None``: upstream's behaviour). The checkout on disk is untouched, and tracebacks keep upstream's
file and line numbers.

:func:`progress_at` gives the three values for a snapshot taken when the counter read ``nimg``;
:func:`continue_run` sets up a resumed run's options from its snapshot and the same command's
options without ``--resume``.

Example:
    >>> progress_at(nimg=8128, batch_size=64, kimg_per_tick=4)  # ticks end at 64, 4096 and 8128 images
    {'cur_nimg': 8128, 'cur_tick': 3, 'batch_idx': 127}
"""
from __future__ import annotations

import ast
import inspect
import textwrap

from .spec import UpstreamError

PROGRESS_NAMES = ("cur_nimg", "cur_tick", "batch_idx")


def _progress_value(name: str, upstream_value: ast.expr) -> ast.expr:
    """``(resume_progress or {}).get(name, upstream_value)``."""
    progress = ast.BoolOp(op=ast.Or(), values=[ast.Name("resume_progress", ast.Load()), ast.Dict(keys=[], values=[])])
    return ast.Call(func=ast.Attribute(progress, "get", ast.Load()), args=[ast.Constant(name), upstream_value],
                    keywords=[])


def resumable_loop(function):
    """Upstream's ``function`` (its own source, its module's globals) taking ``resume_progress=None``.

    ``resume_progress`` maps some of :data:`PROGRESS_NAMES` to the values the loop starts from.
    Raises :class:`~.spec.UpstreamError` unless the function assigns each of them exactly once at
    its top level (a checkout that changed them: the adapter's tested commit is in its module).
    """
    source = textwrap.dedent(inspect.getsource(function))
    tree = ast.parse(source)
    ast.increment_lineno(tree, function.__code__.co_firstlineno - 1)
    definition = tree.body[0]
    assignments = {name: [] for name in PROGRESS_NAMES}
    for statement in definition.body:
        if (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name) and statement.targets[0].id in assignments):
            assignments[statement.targets[0].id].append(statement)
    for name, found in assignments.items():
        if len(found) != 1:
            raise UpstreamError(f"{function.__module__}.{function.__name__} assigns {name} {len(found)} times at its "
                                "top level (expected once); this checkout's loop is not one the adapter was tested on")
        found[0].value = _progress_value(name, found[0].value)
    definition.args.kwonlyargs.append(ast.arg("resume_progress"))
    definition.args.kw_defaults.append(ast.Constant(None))
    ast.fix_missing_locations(tree)
    namespace = {}
    exec(compile(tree, inspect.getsourcefile(function), "exec"), function.__globals__, namespace)
    resumable = namespace[function.__name__]
    resumable.__doc__ = function.__doc__
    return resumable


def resumable_loop_patch(loop_module, name: str = "training_loop") -> list:
    """The patch that makes ``loop_module.name`` accept ``resume_progress`` (for every rank's process)."""
    return [(loop_module, name, resumable_loop(getattr(loop_module, name)))]


def progress_at(nimg: int, batch_size: int, kimg_per_tick: float) -> dict:
    """The loop's ``cur_nimg``, ``cur_tick`` and ``batch_idx`` just after a snapshot taken at ``nimg`` images.

    Snapshots are taken at the end of a tick. Upstream's loop ends tick 0 after the first iteration
    and each later tick at the first iteration where ``cur_nimg >= tick_start + kimg_per_tick * 1000``
    (the same float comparison here), or where the run ends (which is where a snapshot at ``nimg`` not
    on that grid came from); then ``cur_tick`` counts the ticks ended.
    """
    cur_nimg = tick_start = cur_tick = 0
    while cur_nimg < nimg:
        cur_nimg += batch_size
        if cur_tick != 0 and cur_nimg < tick_start + kimg_per_tick * 1000 and cur_nimg < nimg:
            continue
        cur_tick += 1
        tick_start = cur_nimg
    return {"cur_nimg": int(nimg), "cur_tick": cur_tick, "batch_idx": int(nimg) // batch_size}


def continue_run(options, fresh, snapshot: dict, kimg_per_tick_default: float, loss_keys=()) -> dict | None:
    """Make a ``--resume`` of a snapshot this library wrote go on where its run stopped; returns its progress.

    ``options``: upstream's training options for this (resumed) run, changed in place; ``fresh``:
    the same command's options without ``--resume``; ``snapshot``: the loaded snapshot (its ``D``
    counted ``images_seen``). Sets the loop's starting kimg, tick and iteration (``resume_progress``,
    for :func:`resumable_loop`) and the diffusion loss's (``loss_kwargs.diffusion["progress"]``);
    undoes what upstream's resume switches off for fine-tuning, by taking ``fresh``'s value of every
    top-level option that differs (EMA ramp-up, ADA speed) and of ``loss_keys`` (StyleGAN3's blur
    ramp); sets ADA's ``augment_p`` from the snapshot's ``augment_pipe``. A snapshot without an image
    count (a pretrained network) changes nothing: weights only, as upstream resumes (returns None).
    """
    nimg = int(getattr(snapshot["D"], "images_seen", 0))
    if nimg == 0:
        print("Resuming weights only: the snapshot has no image count (diffaug-noise did not write it), "
              "so kimg and ADA p start from zero, as upstream resumes.")
        return None
    if nimg >= options.total_kimg * 1000:
        raise UpstreamError(f"the --resume snapshot is at kimg {nimg / 1000:g}, not below --kimg "
                            f"{options.total_kimg:g}; raise --kimg to continue the run, or pass --no-resume-progress "
                            "to train from it anew")
    _take(options, fresh, (set(options) | set(fresh)) - {"resume_pkl", "loss_kwargs", "run_dir"})
    _take(options.loss_kwargs, fresh.loss_kwargs, loss_keys)
    progress = progress_at(nimg, options.batch_size, options.get("kimg_per_tick", kimg_per_tick_default))
    options.resume_progress = progress
    options.loss_kwargs.diffusion["progress"] = progress
    augment = snapshot.get("augment_pipe")
    if options.get("ada_target") is not None and augment is not None:
        options.augment_p = float(augment.p)
    print(f"Continuing the snapshot's run at kimg {nimg / 1000:g}, tick {progress['cur_tick']}, ADA p "
          f"{options.get('augment_p', 0):.5f} (--no-resume-progress starts from zero).")
    return progress


def _take(options: dict, fresh: dict, keys) -> None:
    """``options[key]`` as in ``fresh`` for each of ``keys``: its value, or absent where ``fresh`` has none."""
    missing = object()
    for key in keys:
        if fresh.get(key, missing) is missing:
            options.pop(key, None)
        elif options.get(key, missing) is missing or options[key] != fresh[key]:
            options[key] = fresh[key]


__all__ = ["PROGRESS_NAMES", "continue_run", "progress_at", "resumable_loop", "resumable_loop_patch"]
