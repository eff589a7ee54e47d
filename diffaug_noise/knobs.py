"""Settings as dataclasses of knobs: one name, default, help and check for each, from CLI flag to argument.

Every command's options (the demos', the adapters', the benches') are generated from such fields
(``diffaug_noise.cli.knob_options``), so a knob is written once: its field name is the Python argument and,
dashed, the flag; its help is the ``--help`` line; :func:`check_knobs` applies its kind, choices and
range in ``__post_init__``, so a bad value fails the same way from Python and from the shell.

Kinds: ``int``, ``float``, ``str``, ``bool`` (an on/off flag), ``"path"`` (an existing file),
``"exists"`` (an existing file or folder), ``"dir"`` (a folder, made if missing), ``"file"`` (a file to
write), ``"list"`` (a tuple of ``choices``; comma-separated on the CLI), ``"numbers"`` (a tuple of
finite numbers, each bounded by the range), ``"ints"`` (likewise, of ints), ``"count"`` (a tuple
``0..N-1``, given as ``N`` on the CLI: seeds), ``"shapes"`` (a tuple of tensor shapes, ``64x3x32x32,...`` on the CLI).

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
    ValueError: sigma must be a finite number > 0; got -1.0
"""
from __future__ import annotations

import dataclasses
import math
import os
from numbers import Real

KINDS = (int, float, str, bool, "path", "exists", "dir", "file", "list", "numbers", "ints", "count", "shapes")


def knob(default, help: str, *, kind=None, choices=None, minimum=None, maximum=None, exclusive_minimum=False,
         exclusive_maximum=False, aliases=(), preset_part=None, required=False, why=""):
    """A settings field with what the CLI needs to show it and :func:`check_knobs` to check it.

    ``choices`` restricts the values (each value, for ``"list"``); ``minimum`` and ``maximum`` bound them
    (inclusive; ``exclusive_minimum`` / ``exclusive_maximum`` make a bound strict); ``aliases`` are extra
    CLI spellings (an old name, an official fork's); ``preset_part`` (``"noise"``/``"controller"``) marks a
    knob whose ``None`` default takes a preset's value of the same name; ``required``: the CLI has no
    default; ``why``: a reason the error message gives after the rule.
    """
    meta = knob_meta(help, kind=kind, choices=choices, minimum=minimum, maximum=maximum,
                     exclusive_minimum=exclusive_minimum, exclusive_maximum=exclusive_maximum, aliases=aliases,
                     preset_part=preset_part, required=required, why=why)
    return field_of(default, meta)


def knob_meta(help: str, *, kind=None, choices=None, minimum=None, maximum=None, exclusive_minimum=False,
              exclusive_maximum=False, aliases=(), preset_part=None, required=False, why="") -> dict:
    """A knob's metadata (what :func:`knob` stores on its field); the arguments are :func:`knob`'s."""
    if kind not in KINDS:
        raise ValueError(f"unknown knob kind {kind!r}; choose one of {KINDS}")
    return dict(help=help, kind=kind, choices=choices, minimum=minimum, maximum=maximum,
                exclusive_minimum=exclusive_minimum, exclusive_maximum=exclusive_maximum, aliases=tuple(aliases),
                preset_part=preset_part, required=required, why=why)


def field_of(default, meta: dict):
    """A dataclass field with ``default`` (copied per instance when mutable) and the knob ``meta``."""
    mutable = isinstance(default, (list, dict, set))
    return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta) if mutable else \
        dataclasses.field(default=default, metadata=meta)


def knob_fields(settings) -> list:
    """The knob fields of a settings dataclass (or instance), in order."""
    return [f for f in dataclasses.fields(settings) if "kind" in f.metadata]


def rule(meta: dict) -> str:
    """What a value must be, as an error message says it: ``be an int >= 1``, ``lie in [0, 1]``, ...

    Example:
        >>> rule(knob_meta("", kind=float, minimum=0.0, exclusive_minimum=True))
        'be a finite number > 0'
        >>> rule(knob_meta("", kind=float, minimum=0.0, maximum=1.0, exclusive_minimum=True, exclusive_maximum=True))
        'lie in the open interval (0, 1)'
    """
    low, high, kind = meta["minimum"], meta["maximum"], meta["kind"]
    open_low, open_high = meta["exclusive_minimum"], meta.get("exclusive_maximum", False)
    if low is not None and high is not None:
        if open_low and open_high:
            return f"lie in the open interval ({low:g}, {high:g})"
        return f"lie in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
    noun = {int: "an int", "numbers": "numbers", "ints": "ints", "count": "ints"}.get(kind, "a finite number")
    if low is not None:
        return f"be {noun} {'>' if open_low else '>='} {low:g}"
    if high is not None:
        return f"be {noun} {'<' if open_high else '<='} {high:g}"
    return f"be {noun}"


def check_value(name: str, value, meta: dict, default=None) -> None:
    """``value`` fits the knob ``meta`` (kind, choices, range): else ``TypeError`` (a wrong kind) or ``ValueError``
    naming ``name``, the rule and the value; ``None`` passes where it is the default.

    The one check of every setting, from a constructor's argument to a CLI option (in the spirit of kornia's
    ``KORNIA_CHECK``).

    Example:
        >>> check_value("sigma", -1, knob_meta("", kind=float, minimum=0.0, exclusive_minimum=True))
        Traceback (most recent call last):
        ...
        ValueError: sigma must be a finite number > 0; got -1
    """
    if value is None and (default is None or meta["required"]):
        return
    kind, why = meta["kind"], f" ({meta['why']})" if meta.get("why") else ""
    scalar = {bool: lambda v: isinstance(v, bool),
              int: lambda v: isinstance(v, int) and not isinstance(v, bool),
              float: lambda v: isinstance(v, Real) and not isinstance(v, bool),
              str: lambda v: isinstance(v, str)}
    if kind in ("path", "exists", "dir", "file"):
        ok = isinstance(value, (str, os.PathLike))
    elif kind in scalar:
        ok = scalar[kind](value)
    elif kind == "list":
        ok = isinstance(value, (tuple, list)) and len(value) > 0
    elif kind == "numbers":
        ok = isinstance(value, (tuple, list)) and len(value) > 0 and all(scalar[float](v) for v in value)
    elif kind == "ints":
        ok = isinstance(value, (tuple, list)) and len(value) > 0 and all(scalar[int](v) for v in value)
    elif kind == "count":
        ok = isinstance(value, (tuple, list)) and len(value) > 0 and all(scalar[int](v) and v >= 0 for v in value)
    else:  # shapes
        ok = isinstance(value, (tuple, list)) and len(value) > 0 and all(
            isinstance(s, (tuple, list)) and s and all(scalar[int](d) and d >= 1 for d in s) for s in value)
    if not ok:
        what = {bool: "true or false", int: "an int", float: "a number", "list": "a non-empty list",
                "numbers": "a non-empty list of finite numbers", "ints": "a non-empty list of ints",
                "count": "a non-empty list of ints >= 0",
                "shapes": "a list of shapes of positive ints"}.get(kind, "a string")
        got = f"{type(value).__name__} {value!r}" if kind in scalar else repr(value)
        raise TypeError(f"{name} must be {what}; got {got}")
    bad = [v for v in (value if kind == "list" else [value]) if meta["choices"] and v not in meta["choices"]]
    if bad:
        shown = repr(bad) if kind == "list" else repr(bad[0])
        raise ValueError(f"unknown {name} {shown}; choose one of {', '.join(map(str, meta['choices']))}")
    low, high = meta["minimum"], meta["maximum"]
    open_low, open_high = meta["exclusive_minimum"], meta.get("exclusive_maximum", False)
    for v in (value if kind in ("numbers", "ints", "count") else [value]):
        if isinstance(v, (str, os.PathLike, bool)) or not isinstance(v, Real):
            continue
        inside = (math.isfinite(v) and (low is None or (v > low if open_low else v >= low))
                  and (high is None or (v < high if open_high else v <= high)))
        if not inside:
            raise ValueError(f"{name} must {rule(meta)}{why}; got {value!r}")


def check_knob(field, value) -> None:
    """``value`` fits ``field``'s knob (see :func:`check_value`)."""
    check_value(field.name, value, field.metadata, field.default)


def check_knobs(settings) -> None:
    """Check every knob of a settings dataclass instance (see :func:`check_value`)."""
    for field in knob_fields(settings):
        check_knob(field, getattr(settings, field.name))


__all__ = ["KINDS", "check_knob", "check_knobs", "check_value", "field_of", "knob", "knob_fields", "knob_meta", "rule"]
