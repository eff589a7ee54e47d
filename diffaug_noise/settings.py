"""The catalogue: the layer's settings, each defined once (kind, default, range or choices, help, aliases).

:class:`~diffaug_noise.DiffusionNoise` and :class:`~diffaug_noise.AdaptiveController` take their
defaults from here and check their arguments with :func:`check` (the same rules and messages as every
command's options); the demos' configs and the adapters' options declare these settings with
:func:`setting`, so ``--sigma``'s help, range and spelling are the same in every command that has it. A
command may choose another default (the demos' tuned ones): its field says so in a note after the
catalogue's help.

Example:
    >>> DEFAULTS["sigma"], SETTINGS["sigma"]["help"]
    (0.05, 'Noise std, in the units of what is noised.')
    >>> check("t_min", 0)
    Traceback (most recent call last):
    ...
    ValueError: t_min must be an int >= 1 (t = 0 is the clean sample); got 0
"""
from __future__ import annotations

from .knobs import check_value, field_of, knob_meta
from .schedules import SCHEDULES
from .timesteps import T_DISTS

SIGNALS = ("sign", "relativistic")  # or, from Python, a callable

_CATALOGUE = {  # name: (default, knob_meta arguments)
    "schedule": ("linear", dict(help="Beta schedule of the forward diffusion.", kind=str, choices=tuple(SCHEDULES))),
    "beta_start": (1e-4, dict(help="First beta of the schedule.", kind=float, minimum=0.0, maximum=1.0,
                              exclusive_minimum=True, exclusive_maximum=True)),
    "beta_end": (2e-2, dict(help="Last beta of the schedule (at t_max).", kind=float, minimum=0.0, maximum=1.0,
                            exclusive_minimum=True, exclusive_maximum=True)),
    "t_min": (10, dict(help="Smallest T, at p = 0.", kind=int, minimum=1, why="t = 0 is the clean sample")),
    "t_max": (1000, dict(help="Largest T, at p = 1.", kind=int, minimum=1)),
    "sigma": (0.05, dict(help="Noise std, in the units of what is noised.", kind=float, minimum=0.0,
                         exclusive_minimum=True, aliases=("--noise-sd",))),
    "t_dist": ("priority", dict(help="Law of t over 1..T: priority (P(t) proportional to t, the paper's) or "
                                     "uniform.", kind=str, choices=T_DISTS, aliases=("--ts-dist",))),
    "clean_prob": (0.0, dict(help="Share of D's inputs the diffusion leaves clean (t = 0).", kind=float, minimum=0.0,
                             maximum=1.0)),
    "target": (None, dict(help="Controller target for r_d, a mean of signs in [-1, 1] (the signal's default: 0.6 for "
                               "sign, 0.766 for relativistic).", kind=float, minimum=-1.0, maximum=1.0)),
    "interval": (4, dict(help="Controller interval: D steps between adjustments of p.", kind=int, minimum=1)),
    "kimg": (100.0, dict(help="Controller speed: thousands of images for p to go from 0 to 1 (T from t_min to "
                              "t_max).", kind=float, minimum=0.0, exclusive_minimum=True)),
    "signal": ("sign", dict(help="What the controller reads: sign (the share of reals D calls real), relativistic "
                                 "(pairs of a real and a fake D compares); from Python also a callable.", kind=str,
                            choices=SIGNALS)),
    "centre": (0.0, dict(help="The sign signal's decision boundary on D's logits (0.5 for least squares with targets "
                              "0/1).", kind=float)),
}
SETTINGS = {name: knob_meta(**meta) for name, (_, meta) in _CATALOGUE.items()}  # name -> knob metadata
DEFAULTS = {name: default for name, (default, _) in _CATALOGUE.items()}  # name -> the layer's default


def setting(name: str, default=..., note: str = "", **changes):
    """A settings-dataclass field for the catalogue's ``name``: its help (then ``note``), range, choices, aliases.

    ``default``: the command's own (the catalogue's when left out); ``changes``: other knob arguments
    this command needs (``preset_part=...``, a narrower ``choices``).
    """
    meta = {**SETTINGS[name], **changes}
    if note:
        meta["help"] = f"{meta['help']} {note}"
    return field_of(DEFAULTS[name] if default is ... else default, meta)


def check(name: str, value) -> None:
    """Check ``value`` against the catalogue's ``name`` (``None`` passes where the default is None)."""
    check_value(name, value, SETTINGS[name], DEFAULTS[name])


__all__ = ["DEFAULTS", "SETTINGS", "SIGNALS", "check", "setting"]
