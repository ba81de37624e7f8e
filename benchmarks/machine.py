"""What ran the benchmark: the machine, the software and the load around it.

Absolute figures mean little on a shared 2-core machine, so every report
carries the load average at the start and end of each section.
"""

import contextlib
import datetime as dt
import os
import platform
import sqlite3
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psutil


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded."""
    return [round(x, 2) for x in os.getloadavg()]


def machine_details() -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "openenv": version("openenv"),
        "uvicorn": version("uvicorn"),
        "websockets": version("websockets"),
        "loadavg_start": load_average(),
    }
