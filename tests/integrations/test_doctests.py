"""The examples in integrations/ docstrings run (pytest's --doctest-modules covers diffaug_noise/ only)."""
import doctest
import importlib
import pkgutil

import pytest

import diffaug_noise.integrations as integrations

MODULES = ["diffaug_noise.integrations"] + [f"diffaug_noise.integrations.{m.name}"
                                            for m in pkgutil.iter_modules(integrations.__path__)]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
