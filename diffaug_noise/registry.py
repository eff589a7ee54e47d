"""Every named choice of the project is a :class:`Registry`: name -> builder, one API for all of them.

Adapters (``diffaug_noise.integrations.ADAPTERS``), datasets and the readers of their source formats
(:mod:`diffaug_noise.data`), feature extractors (:mod:`diffaug_noise.metrics.evaluation`) and
t-conditioning methods (:data:`diffaug_noise.conditioning.CONDITIONINGS`): a name is registered once
(a second registration of another entry under it is refused), an unknown name is an error that lists
the names, and ``--help`` shows them.

Example:
    >>> colours = Registry("colour")
    >>> colours.register("red", (255, 0, 0))
    (255, 0, 0)
    >>> colours["blue"]
    Traceback (most recent call last):
    ...
    ValueError: unknown colour 'blue'; choose one of red
    >>> colours.register("red", (250, 0, 0))
    Traceback (most recent call last):
    ...
    ValueError: a colour named 'red' is already registered
"""
from __future__ import annotations


class Registry(dict):
    """A dict of named entries of one ``kind``; ``error`` is the exception an unknown name raises."""

    def __init__(self, kind: str, error: type = ValueError):
        super().__init__()
        self.kind, self.error = kind, error

    def register(self, name: str, entry):
        """Add ``entry`` under ``name`` (once; the same entry again is a no-op); returns it."""
        if name in self and self[name] is not entry and self[name] != entry:
            raise ValueError(f"a {self.kind} named {name!r} is already registered")
        self[name] = entry
        return entry

    def __missing__(self, name):
        raise self.error(f"unknown {self.kind} {name!r}; choose one of {', '.join(self)}")

    def names(self) -> tuple:
        """The registered names, in registration order (what ``--help`` lists)."""
        return tuple(self)
