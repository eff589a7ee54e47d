"""Click options generated from knob dataclasses (:mod:`diffaug_noise.knobs`): every command's options, one mechanism.

A field ``sigma`` becomes ``--sigma`` (its aliases too), with the field's help, default, type,
choices and range; :func:`values` turns what click parsed back into the dataclass's arguments (a
count of seeds into the seeds themselves). The demos (``run toy``, ``run digits``, ``run guidance``),
the adapters (``run NAME``) and the benches declare dataclasses; nothing here names a command.

Example:
    >>> import click, dataclasses
    >>> from diffaug_noise.knobs import knob
    >>> @dataclasses.dataclass
    ... class Settings:
    ...     seeds: tuple = knob((0,), "How many seeds.", kind="count")
    ...     methods: tuple = knob(("plain",), "Which methods.", kind="list", choices=("plain", "diffusion"))
    >>> command = with_knobs(Settings)(click.Command("demo", callback=lambda **kw: print(values(Settings, kw))))
    >>> command.main(["--seeds", "3", "--methods", "plain,diffusion"], standalone_mode=False)
    {'seeds': (0, 1, 2), 'methods': ('plain', 'diffusion')}
"""
from __future__ import annotations

import dataclasses
import pathlib
import re

import click

from diffaug_noise.knobs import knob, knob_fields
from diffaug_noise.presets import preset_kwargs

_TYPES = {int: click.INT, float: click.FLOAT, str: click.STRING}

# The alias policy: a flag is spelt as its field is named; a knob's own aliases are official forks' spellings
# (--noise-sd); a spelling an earlier release took lives on here, so every command with that field takes it.
EARLIER_SPELLINGS = {"iterations": ("--iters", "--steps"),  # toy took --iters, digits --steps
                     "instance_sigma": ("--fixed-sigma",),  # toy's
                     "outdir": ("--out",)}  # the demos'


def comma_list(value: str, allowed, what: str, param_hint: str | None = None) -> tuple:
    """``"a, b"`` as ``("a", "b")``, each one of ``allowed``; otherwise a usage error naming the bad ones and the
    choices."""
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise click.BadParameter(f"unknown {what}(s) {bad or value!r}; choose from {', '.join(allowed)}",
                                 param_hint=param_hint)
    return items


def parse_shapes(value: str) -> tuple:
    """``"64x3x32x32,16x3x256x256"`` as ``((64, 3, 32, 32), (16, 3, 256, 256))``, or a usage error."""
    try:
        shapes = tuple(tuple(int(d) for d in s.split("x")) for s in value.split(",") if s.strip())
    except ValueError:
        raise click.BadParameter(f"expected shapes like 64x3x32x32,16x3x256x256; got {value!r}") from None
    if not shapes or any(len(s) < 1 or min(s) < 1 for s in shapes):
        raise click.BadParameter(f"expected positive dimensions; got {value!r}")
    return shapes


def parse_numbers(value: str, what: str, kind: str = "numbers") -> tuple:
    """``"0,0.5,2"`` as ``(0.0, 0.5, 2.0)`` (``kind="ints"``: ``"0,10"`` as ``(0, 10)``), or a usage error naming
    ``what``."""
    convert, plural = (int, "integers") if kind == "ints" else (float, "numbers")
    try:
        numbers = tuple(convert(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{what} must be comma-separated {plural}; got {value!r}") from None
    if not numbers:
        raise click.BadParameter(f"{what} must name at least one number; got {value!r}")
    return numbers


def _preset_default_text(field, presets: tuple) -> str | None:
    """What ``--help`` shows as the default of a knob whose ``None`` means "the preset's"."""
    part = field.metadata.get("preset_part")
    if part is None or not presets:
        return None
    return "the preset's: " + ", ".join(f"{p} {preset_kwargs(p, part)[field.name]}" for p in presets)


def option(field, presets: tuple = (), default=None) -> click.Option:
    """The click option of one knob field; ``default`` overrides the field's (a command's own default)."""
    meta = field.metadata
    flag = "--" + field.name.replace("_", "-")
    kind, choices, low, high = meta["kind"], meta["choices"], meta["minimum"], meta["maximum"]
    value = field.default if default is None else default
    help_text = meta["help"]
    if kind is bool:
        return click.Option([f"{flag}/--no-{flag[2:]}", field.name], default=value, show_default=True, help=help_text)
    callback = None
    if kind == "list":
        type_, value = click.STRING, None if value is None else ",".join(value)
        def callback(ctx, param, v, c=choices, n=field.name):
            return None if v is None else comma_list(v, c, n.rstrip("s"), "--" + n.replace("_", "-"))
    elif kind in ("numbers", "ints"):
        type_, value = click.STRING, None if value is None else ",".join(f"{v:g}" for v in value)
        callback = lambda ctx, param, v, n=field.name, k=kind: None if v is None else parse_numbers(v, n, k)  # noqa
    elif kind == "count":
        type_, value = click.IntRange(min=1), None if value is None else len(value)
    elif kind == "shapes":
        type_, value = click.STRING, None if value is None else ",".join("x".join(map(str, s)) for s in value)
        callback = lambda ctx, param, v: None if v is None else parse_shapes(v)  # noqa: E731
    elif choices:
        type_ = click.Choice(choices)
    elif kind == "path":
        type_ = click.Path(exists=True, dir_okay=False)
    elif kind == "exists":
        type_ = click.Path(exists=True, path_type=pathlib.Path)
    elif kind == "dir":
        type_ = click.Path(file_okay=False, path_type=pathlib.Path)
    elif kind == "file":
        type_ = click.Path(dir_okay=False, path_type=pathlib.Path)
    elif low is not None or high is not None:
        range_type = click.FloatRange if kind is float else click.IntRange
        type_ = range_type(min=low, max=high, min_open=meta["exclusive_minimum"])
    else:
        type_ = _TYPES[kind]
    preset_text = _preset_default_text(field, presets)
    if preset_text:
        help_text += f"  [default: {preset_text}]"
    required = meta["required"] and default is None  # a command's own default makes a required knob optional
    spellings = [flag, *meta["aliases"], *EARLIER_SPELLINGS.get(field.name, ())]
    return click.Option([*spellings, field.name], type=type_, default=None if required else value,
                        required=required, show_default=value is not None and not required,
                        callback=callback, help=help_text)


def options(settings_class, presets: tuple = (), only=None, skip=(), defaults=None) -> list[click.Option]:
    """The click options of ``settings_class``'s knobs (``only`` these, not ``skip``; ``defaults`` overriding)."""
    defaults = defaults or {}
    return [option(f, presets, defaults.get(f.name)) for f in knob_fields(settings_class)
            if (only is None or f.name in only) and f.name not in skip]


def with_knobs(settings_class, **kwargs):
    """A decorator adding :func:`options` of ``settings_class`` to a click command (after its own)."""
    def add(command: click.Command) -> click.Command:
        command.params.extend(options(settings_class, **kwargs))
        return command
    return add


def values(settings_class, params: dict) -> dict:
    """The arguments of ``settings_class`` in click's ``params``: a seed count as the seeds ``0..N-1``."""
    out = {}
    for field in knob_fields(settings_class):
        if field.name in params:
            value = params[field.name]
            out[field.name] = tuple(range(value)) if field.metadata["kind"] == "count" and value is not None else value
    return out


@dataclasses.dataclass
class JsonReport:
    """A command's results as JSON as well as on the console (the benches)."""

    json: pathlib.Path = knob(None, "Also write the results to this JSON file.", kind="file")


@dataclasses.dataclass
class RunFolder:
    """Where a demo writes its results, and its checkpoints (each command gives its own defaults)."""

    outdir: pathlib.Path = knob(None, "Folder for metrics.json and the plots (created if missing).", kind="dir")
    checkpoint_every: int = knob(500, "Save the whole training state to OUTDIR/checkpoint.pt every N iterations "
                                      "(atomically) and at the end.", kind=int, minimum=1)
    resume: bool = knob(False, "Continue from OUTDIR/checkpoint.pt (same settings required); the result is "
                               "bit-identical to an uninterrupted run. Starts afresh if there is no checkpoint "
                               "yet; leaves a finished run as it is.", kind=bool)


def settings_from(settings_class, params: dict):
    """``settings_class`` built from click's ``params``; a setting it refuses is a usage error naming its flag."""
    try:
        return settings_class(**values(settings_class, params))
    except (ValueError, TypeError) as err:
        message = str(err)
        for field in sorted(knob_fields(settings_class), key=lambda f: -len(f.name)):  # fixed_T before T
            message = re.sub(rf"(?<![\w-]){re.escape(field.name)}\b", "--" + field.name.replace("_", "-"), message)
        raise click.UsageError(message) from None


__all__ = ["JsonReport", "RunFolder", "comma_list", "option", "options", "parse_numbers", "parse_shapes",
           "settings_from", "values", "with_knobs"]
