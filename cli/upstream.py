"""`diffaug-noise run <adapter>`: one command per registered adapter, generated from its declarations.

Nothing here names an upstream: the options, their defaults and help come from the adapter's
settings dataclass (:mod:`diffaug_noise.integrations.adapter_settings`) and :class:`UpstreamRun` (how to
run upstream, shared by every adapter and by ``bench upstream``), through the one mechanism of
:mod:`.knobs`; the texts come from the adapter's declarations.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib

import click

from diffaug_noise.data.datasets import data_root_setting
from diffaug_noise.integrations.launch import LAUNCHERS, tell_torchrun
from diffaug_noise.knobs import knob

from .knob_options import options, values


@dataclasses.dataclass
class UpstreamRun:
    """Where upstream's code and data are, and how to run it (every adapter's command, and `bench upstream`)."""

    repo: str = knob(None, "Your checkout of the upstream codebase (not edited). [default: the adapter's environment "
                           "variable]", kind=str)
    data: str = knob(None, "Dataset name (`diffaug-noise data list`) or a zip/folder in upstream's layout.", kind=str,
                     required=True)
    data_root: pathlib.Path = data_root_setting()
    outdir: pathlib.Path = knob(None, "Where upstream writes its run folders.", kind="dir", required=True)
    gpus: int = knob(1, "GPUs, one process each (upstream spawns them; torch.distributed keeps p identical on all).",
                     kind=int, minimum=1)
    launcher: str = knob("spawn", "spawn: upstream starts --gpus processes on this machine; torchrun: this process is "
                                  "one rank of a torchrun job (several nodes; --gpus becomes the world size; "
                                  "docs/integrations.md).", kind=str, choices=LAUNCHERS)
    shims: bool = knob(True, "Compatibility shims for current torch/numpy/setuptools and CPU-only machines "
                             "(docs/integrations.md).", kind=bool)
    trust_pickle: bool = knob(False, "Allow upstream's --resume PKL: unpickling a snapshot runs code named in it; "
                                     "only for files you trust.", kind=bool)


def _run(adapter, run: UpstreamRun, upstream_args, settings: dict) -> None:
    """Resolve the dataset and hand everything to the adapter; setup errors become one-line CLI errors.

    Under torchrun each names its rank and goes into torchrun's failure summary too.
    """
    from diffaug_noise.data import DatasetError
    from diffaug_noise.integrations import UpstreamError

    try:
        data_path = _data_path(run.data, run.data_root)
        adapter.run(["--outdir", str(run.outdir), "--data", str(data_path), "--gpus", str(run.gpus), *upstream_args],
                    repo=run.repo, shims=run.shims, trust_pickle=run.trust_pickle, launcher=run.launcher, **settings)
        return
    except (DatasetError, UpstreamError, ValueError) as err:
        error = click.ClickException(str(err))
    except click.UsageError as err:  # upstream's train.py parsing the arguments after `--`: its options, not ours
        error = click.ClickException(f"{adapter.upstream.name}'s train.py: {err.format_message()} (its options: "
                                     f"diffaug-noise run {adapter.name} --repo PATH -- --help)")
    except click.ClickException as err:  # upstream's train.py's own one-line errors (--batch-gpu < --mbstd, ...)
        error = click.ClickException(f"{adapter.upstream.name}'s train.py: {err.format_message()}")
    if run.launcher == "torchrun" and "RANK" in os.environ:
        if not error.message.startswith("rank "):
            error.message = f"rank {os.environ['RANK']}: {error.message}"
        tell_torchrun(f"Error: {error.format_message()}")
    raise error


def _data_path(data: str, data_root) -> pathlib.Path:
    """``--data`` as upstream's zip or folder; a bundled dataset (``digits``) is prepared on first use, as ``eval``
    does, so the CPU mechanics checks run as README writes them."""
    from diffaug_noise.data import DATASETS, DatasetError, prepare, resolve_data

    try:
        return resolve_data(data, data_root)
    except DatasetError:
        spec = DATASETS.get(data)
        if spec is None or not spec.bundled:
            raise
    return pathlib.Path(prepare(data, None, data_root=data_root).path)


def _upstream_help(adapter, repo) -> None:
    """Print the options of upstream's own ``train.py`` (what goes after ``--``), from the checkout."""
    from diffaug_noise.integrations import UpstreamError

    try:
        with adapter.baseline(repo) as train:
            train.main(["--help"], prog_name=f"diffaug-noise run {adapter.name} [OPTIONS] --", standalone_mode=False)
    except UpstreamError as err:
        raise click.ClickException(str(err))


class AdapterCommand(click.Command):
    """An adapter's ``run`` command: ``-- --help`` shows upstream's ``train.py`` options (only ``--repo`` needed)."""

    def __init__(self, adapter, **kwargs):
        super().__init__(adapter.name, **kwargs)
        self.adapter = adapter

    def parse_args(self, ctx, args):
        if "--" in args and "--help" in args[args.index("--") + 1:]:
            ctx.meta["upstream_help"] = True
            ctx.resilient_parsing = True  # --data and --outdir are not needed to list upstream's options
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        if ctx.meta.get("upstream_help"):
            return _upstream_help(self.adapter, ctx.params.get("repo"))
        return super().invoke(ctx)


def adapter_command(adapter) -> click.Command:
    """``diffaug-noise run NAME`` for one :class:`~diffaug_noise.integrations.Adapter`."""
    up = adapter.upstream
    shared = options(UpstreamRun)
    shared[0].help = f"Your checkout of {up.name} (not edited). [default: ${up.env_var}]"
    knobs = options(adapter.settings_class, adapter.presets)

    def callback(upstream_args, **params):
        _run(adapter, UpstreamRun(**values(UpstreamRun, params)), upstream_args, values(adapter.settings_class, params))

    help_text = (f"Train {adapter.title} with {up.name}'s own training loop, networks, metrics and snapshots; "
                 f"no upstream file is edited.\n\n{adapter.description}\n\n{adapter.summary()}\n\n"
                 f"Arguments after `--` go to upstream's train.py unchanged (`-- --help` lists them). Without CUDA the "
                 f"shims run upstream on the CPU: that checks mechanics, it does not train a model (small settings: "
                 f"--data digits, prepared on first use, {adapter.cpu_note}); upstream's generation scripts assume "
                 f"CUDA.\n\n"
                 f"\b\nExample:\n  diffaug-noise run {adapter.name} {adapter.example}")
    return AdapterCommand(adapter, callback=callback, help=help_text,
                         context_settings={"ignore_unknown_options": True},
                         params=shared + knobs + [click.Argument(["upstream_args"], nargs=-1, type=click.UNPROCESSED)])
