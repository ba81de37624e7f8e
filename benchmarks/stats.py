"""Percentiles and latency summaries: the only statistics the benchmark uses."""

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; ``q`` in [0, 100]; NaN for no values.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.0
    >>> percentile([5.0, 1.0, 3.0], 100)
    5.0
    >>> math.isnan(percentile([], 99))
    True
    """
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def latency_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99, max and mean in milliseconds, and the count.

    >>> summary = latency_ms([0.001, 0.002, 0.003, 0.004])
    >>> summary["n"], summary["p50"], summary["max"]
    (4, 2.0, 4.0)
    """
    ms = [s * 1000.0 for s in seconds]
    return {
        "n": len(ms),
        "p50": percentile(ms, 50),
        "p90": percentile(ms, 90),
        "p99": percentile(ms, 99),
        "max": max(ms) if ms else float("nan"),
        "mean": statistics.fmean(ms) if ms else float("nan"),
    }
