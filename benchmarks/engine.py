"""Engine section: in-process steps of each SQLEnv under test, against raw sqlite3.

Each side is timed by ``engine_timer.py`` run with its own interpreter on its
own data, one after the other in the same run, on the same plans; this module
only writes the plans and summarises what comes back.
"""

import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sql_env.benchmarks.action_mix import EpisodePlan
from sql_env.benchmarks.machine import load_average
from sql_env.benchmarks.stats import latency_ms, percentile

TIMER = Path(__file__).with_name("engine_timer.py")
TIMER_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class TimerSettings:
    """How long the engine timer plays: passes over the mix, resets timed."""

    repeats: int
    resets: int
    seed: int
    split: str


def time_engine(
    python: str, data_dir: Path, plans: list[EpisodePlan], settings: TimerSettings
) -> dict[str, Any]:
    """Raw timings of one engine, from ``engine_timer.py`` under ``python``."""
    spec = {
        "data_dir": str(Path(data_dir).resolve()),
        "plans": [p.to_json() for p in plans],
        **asdict(settings),
    }
    with tempfile.TemporaryDirectory(prefix="sqlenv-engine-") as tmp:
        spec_path, out_path = Path(tmp) / "plans.json", Path(tmp) / "timings.json"
        spec_path.write_text(json.dumps(spec))
        done = subprocess.run(
            [python, "-P", str(TIMER), str(spec_path), str(out_path)],
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=TIMER_TIMEOUT_S,
        )
        if done.returncode != 0:
            raise RuntimeError(f"engine timer under {python} failed:\n{done.stderr}")
        return json.loads(out_path.read_text())


def summarise(raw: dict[str, Any]) -> dict[str, Any]:
    """Steps/s, per-action latency, QUERY against raw sqlite3, reset latency."""
    times = raw["times"]
    steps = [t for k in ("DESCRIBE", "SAMPLE", "QUERY", "ANSWER") for t in times[k]]
    engine_q, raw_q = raw["engine_query"], raw["raw_query"]
    overhead_us = [(e - r) * 1e6 for e, r in zip(engine_q, raw_q, strict=True)]
    per_query = [e / r for e, r in zip(engine_q, raw_q, strict=True) if r > 0]
    resets = latency_ms(raw["resets"])
    return {
        "episodes": len(times["RESET"]),
        "steps": len(steps),
        "steps_per_s": len(steps) / sum(steps),
        "episodes_per_s": len(times["RESET"]) / (sum(steps) + sum(times["RESET"])),
        "obs_errors": raw["obs_errors"],
        "actions_ms": {k: latency_ms(v) for k, v in times.items()},
        "raw_query_ms": latency_ms(raw_q),
        "query_ratio_total": sum(engine_q) / sum(raw_q),
        "query_ratio_median": statistics.median(per_query),
        "query_overhead_us_median": statistics.median(overhead_us),
        "query_overhead_us_p90": percentile(overhead_us, 90),
        "reset_p50_ms": resets["p50"],
        "reset_p99_ms": resets["p99"],
        "resets": resets["n"],
        "python": raw["python"],
    }


def run(
    sides: dict[str, tuple[str, Path]],
    plans: list[EpisodePlan],
    settings: TimerSettings,
) -> dict[str, Any]:
    """Time every side (name -> interpreter, data dir), one after the other."""
    out: dict[str, Any] = {}
    for name, (python, data_dir) in sides.items():
        load = load_average()
        raw = time_engine(python or sys.executable, data_dir, plans, settings)
        out[name] = {**summarise(raw), "load_start": load, "load_end": load_average()}
    return out
