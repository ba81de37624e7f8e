"""The benchmark's report: markdown tables of a result, and plots of it.

Every table puts the code measured side by side (before and after, and the
echo floor where there is one), so each figure is read against a baseline of
the same run. Plots need matplotlib (the ``train`` extra); without it the
report says so and carries on.
"""

import importlib.util
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sql_env.benchmarks.targets import CHEAP_STEPS


def number(x: float | None, digits: int = 2) -> str:
    """A figure for a table: thousands separated, ``-`` when missing.

    >>> number(4896.123, 0), number(0.0213, 3), number(None)
    ('4,896', '0.021', '-')
    """
    if x is None or x != x:
        return "-"
    return f"{x:,.{digits}f}"


def table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    """A markdown table.

    >>> table(["a", "b"], [[1, "x"]])
    ['| a | b |', '| --- | --- |', '| 1 | x |']
    """
    header = list(header)
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(["---"] * len(header)) + " |",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _machine(result: dict[str, Any]) -> list[str]:
    m = result["machine"]
    return [
        f"Run: {m['date_utc']} on {m['cpu']} ({m['cpu_count']} cores, "
        f"{m['memory_gb']} GB), {m['platform']}; Python {m['python']}, "
        f"SQLite {m['sqlite']}, openenv {m['openenv']}, uvicorn {m['uvicorn']}, "
        f"websockets {m['websockets']}. Load average (1, 5, 15 min) at start "
        f"{m['loadavg_start']}, at end {m.get('loadavg_end')}. Command: "
        f"`{result['command']}`.",
        "",
    ]


def _engine(engine: dict[str, Any]) -> list[str]:
    sides = list(engine)

    def row(label: str, get: Any) -> list[str]:
        return [label, *(get(engine[s]) for s in sides)]

    rows = [
        row("episodes x steps", lambda e: f"{e['episodes']} x 4 = {e['steps']}"),
        row("steps/s (mix)", lambda e: number(e["steps_per_s"], 0)),
        row("episodes/s (reset + 4 steps)", lambda e: number(e["episodes_per_s"], 0)),
    ]
    for action in ("RESET", "DESCRIBE", "SAMPLE", "QUERY", "ANSWER"):
        rows.append(
            row(
                f"{action} p50 / mean (ms)",
                lambda e, a=action: (
                    f"{e['actions_ms'][a]['p50']:.3f} / "
                    f"{e['actions_ms'][a]['mean']:.3f}"
                ),
            )
        )
    rows += [
        row(
            "raw sqlite3, same SQL, p50 / mean (ms)",
            lambda e: (
                f"{e['raw_query_ms']['p50']:.3f} / {e['raw_query_ms']['mean']:.3f}"
            ),
        ),
        row(
            "QUERY / raw: total time, median per query",
            lambda e: f"{e['query_ratio_total']:.2f}x, {e['query_ratio_median']:.2f}x",
        ),
        row(
            "QUERY overhead over raw, median / p90 (us)",
            lambda e: (
                f"{e['query_overhead_us_median']:.0f} / "
                f"{e['query_overhead_us_p90']:.0f}"
            ),
        ),
        row(
            "reset p50 / p99 (ms)",
            lambda e: (
                f"{e['reset_p50_ms']:.3f} / {e['reset_p99_ms']:.3f} "
                f"({e['resets']} resets)"
            ),
        ),
        row("error observations in the mix", lambda e: e["obs_errors"]),
        row(
            "load average at start / end",
            lambda e: f"{e['load_start'][0]} / {e['load_end'][0]}",
        ),
    ]
    return ["### Engine, in-process", "", *table(["measure", *sides], rows), ""]


def _wire(wire: dict[str, Any]) -> list[str]:
    rows = [
        [
            r["server"],
            r["concurrency"],
            number(r["steps_per_s"], 0),
            number(
                wire["ratio_to_echo"].get(r["server"], {}).get(str(r["concurrency"]))
            ),
            number(r["step_ms"]["p50"]),
            number(r["step_ms"]["p99"]),
            f"{r['server_cpu_ms_per_step']:.3f} ({r['worker_cpu_ms_per_step']:.3f})",
            r["subprocesses_seen"],
            r["errors"],
        ]
        for r in sorted(wire["rows"], key=lambda r: (r["concurrency"], r["server"]))
    ]
    header = [
        "server",
        "sessions",
        "steps/s",
        "/ echo",
        "step p50 (ms)",
        "step p99 (ms)",
        "server CPU per step, (of it workers) (ms)",
        "worker processes seen",
        "errors",
    ]
    return [
        "### Wire, WebSocket (servers interleaved round by round)",
        "",
        *table(header, rows),
        "",
        f"Load average at start {wire['load_start']}, at end {wire['load_end']}.",
        "",
    ]


def _memory(memory: dict[str, Any]) -> list[str]:
    rows = [
        [
            name,
            p["sessions"],
            number(p["rss_mb"], 1),
            number(p["tree_rss_mb"], 1),
            p["subprocesses"],
            p["fds"],
            p["threads"],
        ]
        for name, m in memory.items()
        for p in m["points"]
    ]
    header = ["server", "sessions", "RSS (MB)", "with workers (MB)", "subprocesses"]
    lines = [
        "### Memory, open idle sessions (reset + one SAMPLE step each)",
        "",
        *table([*header, "fds", "threads"], rows),
        "",
    ]
    lines += [
        f"- {name}: {m['per_session_mb']:.3f} MB per session, {m['errors']} errors, "
        f"RSS after closing all {m['rss_after_close_mb']:.1f} MB."
        for name, m in memory.items()
    ]
    return [*lines, ""]


def _isolation(isolation: dict[str, Any]) -> list[str]:
    sides = list(isolation)
    loads = list(next(iter(isolation.values()), {}))
    rows = []
    for load in loads:
        for step in (*CHEAP_STEPS, "reset"):
            cells = []
            for side in sides:
                probe = isolation[side].get(load, {}).get("probes", {}).get(step)
                cells.append(
                    "-"
                    if probe is None
                    else f"{number(probe['p50'])} / {number(probe['p99'])} / "
                    f"{number(probe['max'])} ({probe['n']})"
                )
            rows.append([load, step, *cells])
    header = [
        "load",
        "other session's",
        *(f"{s}: p50 / p99 / max ms (n)" for s in sides),
    ]
    lines = [
        "### Isolation: another session's cheap steps and /health under load",
        "",
        *table(header, rows),
        "",
    ]
    for side in sides:
        for load, r in isolation[side].items():
            lines.append(
                f"- {side}, {load}: load replies {r['load']}, probe errors "
                f"{r['probe_errors']}, server CPU {r['server_cpu_cores']:.2f} cores, "
                f"load average {r['load_start'][0]} -> {r['load_end'][0]}."
            )
    return [*lines, ""]


def _pools(pools: dict[str, Any]) -> list[str]:
    rows = [
        [
            name,
            number(s["p50"] * 1000, 1),
            number(s["p90"] * 1000, 1),
            number(s["p99"] * 1000, 1),
            number(s["mean"] * 1000, 1),
        ]
        for name, s in pools["round_trip_ms"].items()
    ]
    start = pools["worker_start_ms"]
    lines = [
        "### Pools: one tiny job's round trip through one worker",
        "",
        *table(["through", "p50 (us)", "p90 (us)", "p99 (us)", "mean (us)"], rows),
        "",
        f"A fresh SQL worker is ready {number(start['p50'], 0)} ms (p50 of "
        f"{start['n']}) after it is asked for. Not installed: "
        f"{', '.join(pools['not_installed']) or 'none'}. Load average "
        f"{pools['load_start']} -> {pools['load_end']}.",
        "",
    ]
    return lines


def _targets(rows: list[dict[str, Any]]) -> list[str]:
    def met(row: dict[str, Any]) -> str:
        if row["met"] is None:
            return "not measured"
        if row["goal"]:
            return "goal met" if row["met"] else "goal, not met"
        return "yes" if row["met"] else "**no**"

    body = [
        [r["name"], number(r["before"], 3), number(r["after"], 3), r["wanted"], met(r)]
        for r in rows
    ]
    return [
        "### Targets",
        "",
        *table(["target", "before", "after", "wanted", "met"], body),
        "",
    ]


def render_markdown(result: dict[str, Any]) -> str:
    lines = _machine(result)
    sections = (
        ("engine", _engine),
        ("wire", _wire),
        ("memory", _memory),
        ("isolation", _isolation),
        ("pools", _pools),
    )
    for key, render in sections:
        if result.get(key):
            lines += render(result[key])
    lines += _targets(result["targets"])
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], out_dir: Path) -> list[Path]:
    """PNG plots of the isolation and wire sections; none without matplotlib."""
    if importlib.util.find_spec("matplotlib") is None:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    isolation = result.get("isolation")
    if isolation:
        sides = list(isolation)
        loads = list(next(iter(isolation.values())))
        fig, axes = plt.subplots(1, len(CHEAP_STEPS), figsize=(13, 4), sharey=True)
        width = 0.8 / max(1, len(sides))
        for ax, step in zip(axes, CHEAP_STEPS, strict=True):
            for k, side in enumerate(sides):
                p99 = [
                    isolation[side][load]["probes"].get(step, {}).get("p99", 0.0)
                    for load in loads
                ]
                ax.bar(
                    [i + k * width for i in range(len(loads))], p99, width, label=side
                )
            ax.axhline(50, color="grey", linestyle="--", linewidth=1)
            ax.set_yscale("log")
            ax.set_xticks([i + width * (len(sides) - 1) / 2 for i in range(len(loads))])
            ax.set_xticklabels(loads, rotation=20)
            ax.set_title(f"another session's {step}: p99")
        axes[0].set_ylabel("ms (log); dashed: 50 ms target")
        axes[0].legend()
        fig.tight_layout()
        path = out_dir / "isolation_p99.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    wire = result.get("wire")
    if wire:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for server in sorted({r["server"] for r in wire["rows"]}):
            rows = sorted(
                (r for r in wire["rows"] if r["server"] == server),
                key=lambda r: r["concurrency"],
            )
            ax.plot(
                [r["concurrency"] for r in rows],
                [r["steps_per_s"] for r in rows],
                marker="o",
                label=server,
            )
        concurrencies = sorted({r["concurrency"] for r in wire["rows"]})
        ax.set_xscale("log", base=2)
        ax.set_xticks(concurrencies, [str(c) for c in concurrencies])
        ax.set_xlabel("concurrent sessions")
        ax.set_ylabel("steps/s")
        ax.set_title("Wire throughput, one server process each")
        ax.legend()
        fig.tight_layout()
        path = out_dir / "wire_steps.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
