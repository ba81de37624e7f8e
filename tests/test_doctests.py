"""Every >>> example in the package is part of the suite, found, not listed.

The modules are discovered by walking the installed package, so a new module's
examples run without anyone remembering to add it here.
"""

import doctest
import importlib
import pkgutil

import pytest

import sql_env


def _modules_with_examples() -> list[str]:
    found = []
    finder = doctest.DocTestFinder()
    for info in pkgutil.walk_packages(sql_env.__path__, prefix="sql_env."):
        module = importlib.import_module(info.name)
        if any(test.examples for test in finder.find(module)):
            found.append(info.name)
    return sorted(found)


MODULES = _modules_with_examples()


def test_the_pure_core_has_examples() -> None:
    for name in (
        "sql_env.server.verifier",
        "sql_env.server.rewards",
        "sql_env.server.formatting",
        "sql_env.server.sandbox",
        "sql_env.server.episode_text",
    ):
        assert name in MODULES, name


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
