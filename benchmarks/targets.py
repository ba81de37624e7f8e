"""The targets the benchmark is judged by: a table of data, and how to read it.

Each target names where its value sits in the benchmark's result (a path with
``{side}`` standing for the code measured: ``before`` or ``after``), a rule and
a limit. Targets marked ``goal`` are reported but not required. Where the
limits come from: issue 5 (engine, reset, memory, wire) and issue 8 (QUERY at
most 2x raw, other sessions' cheap steps under load).
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sql_env.benchmarks.isolation import LOADS

Rule = Literal["<", "<=", ">=", "=="]
# The names of the code measured, as every section files its results.
BEFORE, AFTER = "before", "after"
# The wire section's SQLEnv with one and with two SQL workers; the targets read
# the second, the default on a two-core machine.
WIRE_AFTER_1, WIRE_AFTER = "after-1w", "after-2w"
ECHO = "echo"
CHEAP_STEPS = ("describe", "query", "health")
WIRE_CONCURRENCIES = ("1", "16", "64")


@dataclass(frozen=True)
class Target:
    """One target: where its value is, the rule and the limit."""

    name: str
    path: tuple[str, ...]
    rule: Rule
    limit: float
    goal: bool = False
    sides: tuple[str, str] = (BEFORE, AFTER)

    def holds(self, value: float) -> bool:
        """Whether ``value`` meets the target.

        >>> Target("x", (), "<=", 2.0).holds(1.5)
        True
        >>> Target("x", (), ">=", 0.9).holds(0.6)
        False
        """
        match self.rule:
            case "<":
                return value < self.limit
            case "<=":
                return value <= self.limit
            case ">=":
                return value >= self.limit
            case "==":
                return value == self.limit
        raise ValueError(self.rule)


TARGETS: tuple[Target, ...] = (
    Target(
        "QUERY step / raw sqlite3, total time",
        ("engine", "{side}", "query_ratio_total"),
        "<=",
        2.0,
    ),
    Target("reset p50 in-process (ms)", ("engine", "{side}", "reset_p50_ms"), "<", 1.0),
    Target(
        "RSS per idle session (MB)",
        ("memory", "{side}", "per_session_mb"),
        "<=",
        1.0,
    ),
    *(
        Target(
            f"{step} p99 of another session, load {load} (ms)",
            ("isolation", "{side}", load, "probes", step, "p99"),
            "<",
            50.0,
        )
        for load in LOADS
        for step in CHEAP_STEPS
    ),
    Target(
        "probe errors, all loads",
        ("isolation", "{side}", "*", "probe_errors"),
        "==",
        0,
    ),
    *(
        Target(
            f"wire steps/s / echo at {c} sessions",
            ("wire", "ratio_to_echo", "{side}", c),
            ">=",
            0.9,
            goal=True,
            sides=(BEFORE, WIRE_AFTER),
        )
        for c in WIRE_CONCURRENCIES
    ),
)


def lookup(result: Mapping[str, Any], path: tuple[str, ...]) -> float | None:
    """The value at ``path`` (``*`` sums over every key), or None if absent.

    >>> lookup({"a": {"x": {"n": 1}, "y": {"n": 2}}}, ("a", "*", "n"))
    3.0
    >>> lookup({"a": {}}, ("a", "b")) is None
    True
    """
    node: Any = result
    for i, key in enumerate(path):
        if key == "*":
            if not isinstance(node, Mapping) or not node:
                return None
            values = [lookup(child, path[i + 1 :]) for child in node.values()]
            found = [v for v in values if v is not None]
            return float(sum(found)) if found else None
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    if isinstance(node, bool) or not isinstance(node, int | float):
        return None
    return None if math.isnan(node) else float(node)


def evaluate(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per target: its value before and after, and whether after meets it."""
    rows = []
    for target in TARGETS:
        values = {
            label: lookup(result, tuple(p.replace("{side}", side) for p in target.path))
            for label, side in zip(("before", "after"), target.sides, strict=True)
        }
        after = values["after"]
        rows.append(
            {
                "name": target.name,
                "wanted": f"{target.rule} {target.limit:g}",
                "goal": target.goal,
                "before": values["before"],
                "after": after,
                "met": None if after is None else target.holds(after),
            }
        )
    return rows
