"""The >>> examples in the pure modules and the benchmark are part of the suite."""

import doctest
import importlib

import pytest

MODULES = [
    "sql_env.server.verifier",
    "sql_env.server.answer_reading",
    "sql_env.server.execution_match",
    "sql_env.server.result_matching",
    "sql_env.server.rewards",
    "sql_env.server.formatting",
    "sql_env.server.sql_analysis",
    "sql_env.benchmarks.stats",
    "sql_env.benchmarks.targets",
    "sql_env.benchmarks.report",
    "sql_env.benchmarks.isolation",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
