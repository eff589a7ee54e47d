"""Settings as dataclasses of knobs: one name, default, help and check for each, from CLI flag to argument.

Every command's options (the demos', the adapters', the benches') are generated from such fields
(``diffaug_noise.cli.knob_options``), so a knob is written once: its field name is the Python argument and,
dashed, the flag; its help is the ``--help`` line; :func:`check_knobs` applies its kind, choices and
range in ``__post_init__``, so a bad value fails the same way from Python and from the shell.

Kinds: ``int``, ``float``, ``str``, ``bool`` (an on/off flag), ``"path"`` (an existing file),
``"dir"`` (a folder, made if missing), ``"file"`` (a file to write), ``"list"`` (a tuple of
``choices``; comma-separated on the CLI), ``"numbers"`` (a tuple of finite numbers, each bounded by the
range), ``"count"`` (a tuple ``0..N-1``, given as ``N`` on the CLI:
seeds), ``"shapes"`` (a tuple of tensor shapes, ``64x3x32x32,...`` on the CLI).

Example:
    >>> import dataclasses
    >>> @dataclasses.dataclass
    ... class Settings:
    ...     sigma: float = knob(0.5, "Noise std.", kind=float, minimum=0.0, exclusive_minimum=True)
    ...     seeds: tuple = knob((0, 1), "Seeds, as a count on the CLI.", kind="count")
    ...     def __post_init__(self):
    ...         check_knobs(self)
    >>> Settings(sigma=-1.0)
    Traceback (most recent call last):
    ...
    ValueError: sigma must be > 0.0; got -1.0
"""
from __future__ import annotations

import dataclasses
import math
import os
from numbers import Real

KINDS = (int, float, str, bool, "path", "dir", "file", "list", "numbers", "count", "shapes")


def knob(default, help: str, *, kind=None, choices=None, minimum=None, maximum=None, exclusive_minimum=False,
         aliases=(), preset_part=None, required=False):
    """A settings field with what the CLI needs to show it and :func:`check_knobs` to check it.

    ``choices`` restricts the values (each value, for ``"list"``); ``minimum`` and ``maximum`` bound them
    (inclusive; with ``exclusive_minimum`` the value must exceed ``minimum``); ``aliases`` are extra CLI
    spellings (an old name, an official fork's); ``preset_part`` (``"noise"``/``"controller"``) marks a
    knob whose ``None`` default takes a preset's value of the same name; ``required``: the CLI has no default.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown knob kind {kind!r}; choose one of {KINDS}")
    meta = dict(help=help, kind=kind, choices=choices, minimum=minimum, maximum=maximum,
                exclusive_minimum=exclusive_minimum, aliases=tuple(aliases), preset_part=preset_part, required=required)
    mutable = isinstance(default, (list, dict, set))
    return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta) if mutable else \
        dataclasses.field(default=default, metadata=meta)


def knob_fields(settings) -> list:
    """The knob fields of a settings dataclass (or instance), in order."""
    return [f for f in dataclasses.fields(settings) if "kind" in f.metadata]


def check_knob(field, value) -> None:
    """``value`` fits ``field``'s knob (kind, choices, range), or ``ValueError`` naming it and what is allowed."""
    meta, name = field.metadata, field.name
    if value is None and (field.default is None or meta["required"]):
        return
    kind = meta["kind"]
    scalar = {bool: lambda v: isinstance(v, bool),
              int: lambda v: isinstance(v, int) and not isinstance(v, bool),
              float: lambda v: isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v),
              str: lambda v: isinstance(v, str)}
    if kind in ("path", "dir", "file"):
        ok = isinstance(value, (str, os.PathLike))
    elif kind in scalar:
        ok = scalar[kind](value)
    elif kind == "list":
        ok = isinstance(value, (tuple, list)) and len(value) > 0
    elif kind == "numbers":
        ok = isinstance(value, (tuple, list)) and len(value) > 0 and all(scalar[float](v) for v in value)
    elif kind == "count":
        ok = isinstance(value, (tuple, list)) and len(value) > 0 and all(scalar[int](v) and v >= 0 for v in value)
    else:  # shapes
        ok = isinstance(value, (tuple, list)) and len(value) > 0 and all(
            isinstance(s, (tuple, list)) and s and all(scalar[int](d) and d >= 1 for d in s) for s in value)
    if not ok:
        what = {bool: "true or false", int: "an int", float: "a finite number", "list": "a non-empty list",
                "numbers": "a non-empty list of finite numbers", "count": "a non-empty list of ints >= 0",
                "shapes": "a list of shapes of positive ints"}.get(kind, "a string")
        raise ValueError(f"{name} must be {what}; got {value!r}")
    bad = [v for v in (value if kind == "list" else [value]) if meta["choices"] and v not in meta["choices"]]
    if bad:
        shown = repr(bad) if kind == "list" else repr(bad[0])
        raise ValueError(f"unknown {name} {shown}; choose one of {', '.join(map(str, meta['choices']))}")
    low, high, open_low = meta["minimum"], meta["maximum"], meta["exclusive_minimum"]
    each, shown = ("numbers ", "{:g}") if kind == "numbers" else ("", "{}")  # "scales must be numbers >= 0"
    for v in (value if kind == "numbers" else [value]):
        if low is not None and (v <= low if open_low else v < low):
            raise ValueError(f"{name} must be {each}{'>' if open_low else '>='} {shown.format(low)}; got {value!r}")
        if high is not None and v > high:
            raise ValueError(f"{name} must be {each}<= {shown.format(high)}; got {value!r}")


def check_knobs(settings) -> None:
    """Check every knob of a settings dataclass instance (see :func:`check_knob`)."""
    for field in knob_fields(settings):
        check_knob(field, getattr(settings, field.name))


__all__ = ["KINDS", "check_knob", "check_knobs", "knob", "knob_fields"]
