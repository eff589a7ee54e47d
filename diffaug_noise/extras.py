"""Optional dependencies: the layer needs torch and numpy; everything else is an extra, imported on use.

:func:`require` imports a module of an extra or raises :class:`MissingExtraError` naming the
``pip install`` that provides it (the CLI prints that one line and exits).

Example:
    >>> require("math", "cli").sqrt(4.0)
    2.0
    >>> require("no_such_module_here", "eval")
    Traceback (most recent call last):
    ...
    diffaug_noise.extras.MissingExtraError: this needs no_such_module_here, which is not installed: pip install ...
"""
from __future__ import annotations

import importlib


class MissingExtraError(ImportError):
    """An optional dependency is missing; the message names the extra to install."""


def require(module: str, extra: str):
    """Import ``module`` (part of ``extra``), or raise :class:`MissingExtraError` with the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        if err.name is not None and module.split(".")[0] != err.name.split(".")[0]:
            raise  # the module exists but one of its own dependencies is broken: show the real error
        raise MissingExtraError(f"this needs {module}, which is not installed: pip install "
                                f"'diffaug-noise[{extra}]'") from err
