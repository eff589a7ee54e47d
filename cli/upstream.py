"""`diffaug-noise run <adapter>`: one command per registered adapter, generated from its record.

Nothing here names an upstream: the options, their defaults and help come from the adapter's
settings dataclass (:mod:`diffaug_noise.integrations.options`), the texts from its record.
"""
from __future__ import annotations

import dataclasses
import pathlib

import click

from diffaug_noise.presets import preset_kwargs

from .io import DATA_ROOT_HELP

_KINDS = {int: click.INT, float: click.FLOAT, str: click.STRING}


def _default_text(field, presets: tuple) -> str | None:
    """What ``--help`` shows as the default of a knob whose ``None`` means "the preset's"."""
    part = field.metadata.get("preset_part")
    if part is None:
        return None
    values = ", ".join(f"{p} {preset_kwargs(p, part)[field.name]}" for p in presets)
    return f"the preset's: {values}"


def _option(field, presets: tuple) -> click.Option:
    """The click option of one settings field (see :func:`~diffaug_noise.integrations.options.knob`)."""
    meta = field.metadata
    flag = "--" + field.name.replace("_", "-")
    kind, choices, minimum, maximum = meta["kind"], meta["choices"], meta["minimum"], meta["maximum"]
    if kind is bool:
        return click.Option([f"{flag}/--no-{flag[2:]}", field.name], default=field.default, show_default=True, help=meta["help"])
    if choices:
        type_ = click.Choice(choices)
    elif kind == "path":
        type_ = click.Path(exists=True, dir_okay=False)
    elif minimum is not None or maximum is not None:
        type_ = (click.FloatRange(min=minimum, max=maximum, min_open=meta["exclusive_minimum"]) if kind is float
                 else click.IntRange(min=minimum, max=maximum, min_open=meta["exclusive_minimum"]))
    else:
        type_ = _KINDS[kind]
    help_text = meta["help"]
    shown = _default_text(field, presets)
    if shown:
        help_text += f"  [default: {shown}]"
    if meta["aliases"]:
        help_text += f"  (Alias: {', '.join(meta['aliases'])}, the official fork's spelling.)"
    return click.Option([flag, *meta["aliases"], field.name], type=type_, default=field.default,
                        show_default=field.default is not None, help=help_text)


def settings_from_pairs(adapter, pairs) -> dict:
    """Adapter settings from ``NAME=VALUE`` strings, ``NAME`` spelt as ``run``'s flag without its dashes.

    Each value is converted and checked by the very option ``diffaug-noise run NAME`` builds
    (choices, ranges, on/off as true/false), so both commands accept the same values.
    """
    fields = {f.name: f for f in dataclasses.fields(adapter.options_class)}
    settings = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        key = name.strip().lstrip("-").replace("-", "_")
        if not sep or key not in fields:
            known = ", ".join(n.replace("_", "-") for n in fields)
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE with a setting of {adapter.name}; known: {known}",
                                     param_hint="--option")
        option = _option(fields[key], adapter.presets)
        try:
            settings[key] = option.type.convert(value, option, None)
        except click.BadParameter as err:
            raise click.BadParameter(f"{key.replace('_', '-')}={value!r}: {err.message}", param_hint="--option")
    return settings


def _run(adapter, repo, data, data_root, outdir, gpus, launcher, shims, trust_pickle, upstream_args, **options) -> None:
    """Resolve the dataset and hand everything to the adapter; setup errors become one-line CLI errors."""
    from diffaug_noise.data import DatasetError, resolve_data
    from diffaug_noise.integrations import UpstreamError

    try:
        data_path = resolve_data(data, data_root)
        adapter.run(["--outdir", outdir, "--data", str(data_path), "--gpus", str(gpus), *upstream_args],
                    repo=repo, shims=shims, trust_pickle=trust_pickle, launcher=launcher, **options)
    except (DatasetError, UpstreamError, ValueError) as err:
        raise click.ClickException(str(err))


def adapter_command(adapter) -> click.Command:
    """``diffaug-noise run NAME`` for one :class:`~diffaug_noise.integrations.Adapter`."""
    from diffaug_noise.integrations.launch import LAUNCHERS

    up = adapter.upstream
    shared = [
        click.Option(["--repo"], default=None, metavar="PATH", help=f"Your checkout of {up.name} (not edited). [default: ${up.env_var}]"),
        click.Option(["--data"], required=True, help="Dataset name (`diffaug-noise data list`) or a zip/folder in upstream's layout."),
        click.Option(["--data-root"], default=None, type=click.Path(file_okay=False, path_type=pathlib.Path), metavar="DIR",
                     help=DATA_ROOT_HELP),
        click.Option(["--outdir"], required=True, metavar="DIR", help="Where upstream writes its run folders."),
        click.Option(["--gpus"], type=click.IntRange(min=1), default=1, show_default=True,
                     help="GPUs, one process each (upstream spawns them; torch.distributed keeps p identical on all)."),
        click.Option(["--launcher"], type=click.Choice(LAUNCHERS), default="spawn", show_default=True,
                     help="spawn: upstream starts --gpus processes on this machine; torchrun: this process is one rank "
                          "of a torchrun job (several nodes; --gpus becomes the world size; docs/integrations.md)."),
        click.Option(["--shims/--no-shims"], default=True, show_default=True,
                     help="Compatibility shims for current torch/numpy/timm and CPU-only machines (docs/integrations.md)."),
        click.Option(["--trust-pickle"], is_flag=True,
                     help="Allow upstream's --resume PKL: unpickling a snapshot runs code named in it; only for files you trust."),
    ]
    knobs = [_option(f, adapter.presets) for f in dataclasses.fields(adapter.options_class)]
    names = [f.name for f in dataclasses.fields(adapter.options_class)]

    def callback(repo, data, data_root, outdir, gpus, launcher, shims, trust_pickle, upstream_args, **options):
        _run(adapter, repo, data, data_root, outdir, gpus, launcher, shims, trust_pickle, upstream_args,
             **{name: options[name] for name in names})

    help_text = (f"Train {adapter.title} with {up.name}'s own training loop, networks, metrics and snapshots; "
                 f"no upstream file is edited.\n\n{adapter.description}\n\n"
                 f"Arguments after `--` go to upstream's train.py unchanged. Without CUDA the shims run upstream on "
                 f"the CPU: that checks mechanics, it does not train a model (small settings: {adapter.cpu_note}); "
                 f"upstream's generation scripts assume CUDA.\n\n"
                 f"\b\nExample:\n  diffaug-noise run {adapter.name} {adapter.example}")
    return click.Command(adapter.name, callback=callback, help=help_text, context_settings={"ignore_unknown_options": True},
                         params=shared + knobs + [click.Argument(["upstream_args"], nargs=-1, type=click.UNPROCESSED)])
