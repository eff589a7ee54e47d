"""The settings of an adapter: one dataclass, one name per knob, documented once, from CLI flag to constructor.

Each field is a :func:`~diffaug_noise.knobs.knob`: its default, its help (shown by
``diffaug-noise run NAME --help``, which is generated from these fields), and how the CLI reads it. The shared knobs are
the core's own names (``sigma``, ``t_dist``, ``t_min``, ``t_max``, ``target``: the arguments of
:class:`~diffaug_noise.DiffusionNoise` and :class:`~diffaug_noise.AdaptiveController`); the
official forks' spellings (``--noise-sd``, ``--ts-dist``) are accepted on the command line as
aliases. ``None`` means "the preset's value", and the help lists it per preset.

Example:
    >>> settings = DiffusionSettings(preset="stylegan2", sigma=0.1)
    >>> settings.noise_kwargs()["sigma"], settings.noise_kwargs()["clean_prob"], settings.controller_kwargs()["target"]
    (0.1, 0.5, 0.6)
"""
from __future__ import annotations

import dataclasses

from diffaug_noise.controller import AdaptiveController
from diffaug_noise.knobs import check_knobs, knob
from diffaug_noise.noise import DiffusionNoise
from diffaug_noise.presets import PRESETS, preset_kwargs
from diffaug_noise.settings import setting


@dataclasses.dataclass
class DiffusionSettings:
    """The paper's knobs, shared by every adapter; an adapter subclasses this to add its own."""

    preset: str = knob("paper", "Noise and controller settings: the paper's, or an official fork's "
                                "(docs/reference-quirks.md).",
                       kind=str, choices=tuple(PRESETS))
    target: float | None = setting("target", None, preset_part="controller")
    t_dist: str | None = setting("t_dist", None, preset_part="noise")
    sigma: float | None = setting("sigma", None, preset_part="noise")
    t_min: int | None = setting("t_min", None, preset_part="noise")
    t_max: int | None = setting("t_max", None, preset_part="noise")
    drift_updates: int = knob(200, "The drift guard: say once (tick line, log.txt) when T has sat at t_max, or at "
                                   "t_min with r_d far below the target, for this many controller "
                                   "adjustments.", kind=int,
                              minimum=1)

    def __post_init__(self):
        check_knobs(self)  # every knob of every adapter, checked as the demos' are
        DiffusionNoise.check_config(**self.noise_kwargs())  # and together, with the preset's values
        AdaptiveController.check_config(**self.controller_kwargs())

    def _overrides(self, part: str) -> dict:
        fields = dataclasses.fields(self)
        return {f.name: getattr(self, f.name) for f in fields if f.metadata.get("preset_part") == part}

    def noise_kwargs(self) -> dict:
        """:class:`~diffaug_noise.DiffusionNoise` arguments: the preset's, with the knobs that were set."""
        return preset_kwargs(self.preset, "noise", **self._overrides("noise"))

    def controller_kwargs(self) -> dict:
        """:class:`~diffaug_noise.AdaptiveController` arguments (without the batch size)."""
        return preset_kwargs(self.preset, "controller", **self._overrides("controller"),
                             drift_updates=self.drift_updates)


DiffusionOptions = DiffusionSettings  # the earlier name (CHANGELOG), for adapters written against it

__all__ = ["DiffusionOptions", "DiffusionSettings", "knob"]
