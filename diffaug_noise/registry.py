"""Every named choice of the project is a :class:`Registry`: name -> builder, one API for all of them.

Adapters (``diffaug_noise.integrations.ADAPTERS``), datasets and the readers of their source formats
(:mod:`diffaug_noise.data`), feature extractors (:mod:`diffaug_noise.metrics.evaluation`) and
t-conditioning methods (:data:`diffaug_noise.conditioning.CONDITIONINGS`): a name is registered once
(a second registration of another entry under it is refused), an unknown name is an error that lists
the names, and ``--help`` shows them. A registry may hold a contract, checked when something registers:
a base class its entries must be (subclasses or instances of), or a function that raises, in one line,
on an entry that breaks it (the adapters' :func:`~diffaug_noise.integrations.adapter.check_contract`).

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
    >>> numbers = Registry("number", contract=float)
    >>> numbers.register("two", "2")
    Traceback (most recent call last):
    ...
    TypeError: a number must be a float (or a subclass of it); 'two' is a str
"""
from __future__ import annotations


def _a(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


class Registry(dict):
    """A dict of named entries of one ``kind``; ``error`` is the exception an unknown name raises.

    ``contract``: None, a base class (an entry must be a subclass or an instance of it), or a function
    ``contract(entry)`` that raises on an entry breaking it; applied by :meth:`register`.
    """

    def __init__(self, kind: str, error: type = ValueError, contract=None):
        super().__init__()
        self.kind, self.error, self.contract = kind, error, contract

    def check(self, name: str, entry) -> None:
        """Raise (one line) unless ``entry`` keeps this registry's contract."""
        if isinstance(self.contract, type):
            if not (isinstance(entry, self.contract)
                    or (isinstance(entry, type) and issubclass(entry, self.contract))):
                what = entry.__name__ if isinstance(entry, type) else type(entry).__name__
                raise TypeError(f"{_a(self.kind)} must be {_a(self.contract.__name__)} (or a subclass of it); "
                                f"{name!r} is {_a(what)}")
        elif self.contract is not None:
            self.contract(entry)

    def register(self, name: str, entry):
        """Check ``entry`` against the contract and add it under ``name`` (once; the same entry again is a no-op);
        returns the registered entry."""
        self.check(name, entry)
        if name in self:
            if self[name] is not entry and self[name] != entry:
                raise ValueError(f"{_a(self.kind)} named {name!r} is already registered")
            return self[name]
        self[name] = entry
        return entry

    def __missing__(self, name):
        raise self.error(f"unknown {self.kind} {name!r}; choose one of {', '.join(self)}")

    def names(self) -> tuple:
        """The registered names, in registration order (what ``--help`` lists)."""
        return tuple(self)
