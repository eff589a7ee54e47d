"""The settings of an adapter: one dataclass, one name per knob, documented once, from CLI flag to constructor.

Each field is a :func:`knob`: its default, its help (shown by ``diffaug-noise run NAME --help``,
which is generated from these fields), and how the CLI reads it. The shared knobs are the core's
own names (``sigma``, ``t_dist``, ``t_min``, ``t_max``, ``target``: the arguments of
:class:`~diffaug_noise.DiffusionNoise` and :class:`~diffaug_noise.AdaptiveController`); the
official forks' spellings (``--noise-sd``, ``--ts-dist``) are accepted on the command line as
aliases. ``None`` means "the preset's value", and the help lists it per preset.

Example:
    >>> options = DiffusionOptions(preset="stylegan2", sigma=0.1)
    >>> options.noise_kwargs()["sigma"], options.noise_kwargs()["clean_prob"], options.controller_kwargs()["target"]
    (0.1, 0.5, 0.6)
"""
from __future__ import annotations

import dataclasses
import math
import os
from numbers import Real

from diffaug_noise.controller import AdaptiveController
from diffaug_noise.noise import DiffusionNoise
from diffaug_noise.presets import PRESETS, preset_kwargs
from diffaug_noise.timesteps import T_DISTS


def knob(default, help: str, *, kind=None, choices=None, minimum=None, maximum=None, exclusive_minimum=False, aliases=(),
         preset_part=None):
    """A settings field with what the CLI needs to show it and :class:`DiffusionOptions` to check it.

    ``kind`` is ``int``, ``float``, ``str``, ``bool`` (an on/off flag) or ``"path"`` (an existing file);
    ``choices`` restricts the values; ``minimum`` and ``maximum`` bound them (inclusive; with
    ``exclusive_minimum`` the value must exceed ``minimum``); ``aliases`` are extra CLI spellings; ``preset_part``
    (``"noise"``/``"controller"``) marks a knob whose ``None`` default takes the preset's value of the
    same name.
    """
    meta = dict(help=help, kind=kind, choices=choices, minimum=minimum, maximum=maximum,
                exclusive_minimum=exclusive_minimum, aliases=tuple(aliases), preset_part=preset_part)
    return dataclasses.field(default=default, metadata=meta)


def check_knob(field, value) -> None:
    """``value`` fits ``field``'s knob (kind, choices, range), or ``ValueError`` naming it and what is allowed."""
    meta, name = field.metadata, field.name
    if value is None and field.default is None:
        return
    kind = meta["kind"]
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    elif kind == "path":
        ok = isinstance(value, (str, os.PathLike))
    else:
        ok = isinstance(value, str)
    if not ok:
        what = {bool: "true or false", int: "an int", float: "a finite number"}.get(kind, "a string")
        raise ValueError(f"{name} must be {what}; got {value!r}")
    if meta["choices"] and value not in meta["choices"]:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(map(str, meta['choices']))}")
    low, high, open_low = meta["minimum"], meta["maximum"], meta["exclusive_minimum"]
    if low is not None and (value <= low if open_low else value < low):
        raise ValueError(f"{name} must be {'>' if open_low else '>='} {low}; got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}; got {value!r}")


@dataclasses.dataclass
class DiffusionOptions:
    """The paper's knobs, shared by every adapter; an adapter subclasses this to add its own."""

    preset: str = knob("paper", "Noise and controller settings: the paper's, or an official fork's (docs/reference-quirks.md).",
                       kind=str, choices=tuple(PRESETS))
    target: float | None = knob(None, "Controller target for r_d = E[sign D(noised real)], a mean of signs in [-1, 1].",
                                kind=float, minimum=-1.0, maximum=1.0, preset_part="controller")
    t_dist: str | None = knob(None, "Law of t over 1..T.", kind=str, choices=T_DISTS, aliases=("--ts-dist",),
                              preset_part="noise")
    sigma: float | None = knob(None, "Noise std, in the units of what is noised.", kind=float, minimum=0.0,
                               exclusive_minimum=True, aliases=("--noise-sd",), preset_part="noise")
    t_min: int | None = knob(None, "Smallest T (at p = 0).", kind=int, minimum=1, preset_part="noise")
    t_max: int | None = knob(None, "Largest T (at p = 1).", kind=int, minimum=1, preset_part="noise")
    drift_updates: int = knob(200, "The drift guard: say once (tick line, log.txt) when T has sat at t_max, or at t_min "
                                   "with r_d far below the target, for this many controller adjustments.", kind=int,
                              minimum=1)

    def __post_init__(self):
        for field in dataclasses.fields(self):  # every knob of every adapter, checked the same way
            check_knob(field, getattr(self, field.name))
        AdaptiveController(DiffusionNoise(**self.noise_kwargs()), batch_size=1, **self.controller_kwargs())

    def _overrides(self, part: str) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.metadata.get("preset_part") == part and getattr(self, f.name) is not None}

    def noise_kwargs(self) -> dict:
        """:class:`~diffaug_noise.DiffusionNoise` arguments: the preset's, with the knobs that were set."""
        return {**preset_kwargs(self.preset, "noise"), **self._overrides("noise")}

    def controller_kwargs(self) -> dict:
        """:class:`~diffaug_noise.AdaptiveController` arguments (without the batch size)."""
        return {**preset_kwargs(self.preset, "controller"), **self._overrides("controller"),
                "drift_updates": self.drift_updates}
