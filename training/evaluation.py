"""Evaluate a policy over questions: episodes, a summary with a 95% CI, plots.

``scripts/evaluate.py``, the demo and the notebook call :func:`run_evaluation`
(play, summarise, write the report). Nothing here needs torch.
"""

import json
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from sql_env.training.data import Task
from sql_env.training.environment import DEFAULT_MAX_STEPS, SQLToolEnv
from sql_env.training.plots import plot_steps_histogram, plot_success_by
from sql_env.training.rollout import DEFAULT_MAX_TURNS, Episode, Policy, run_episode

TRAJECTORIES = "trajectories.jsonl"
SUMMARY = "summary.json"
Z_95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default).

    The bounds always hold the observed rate: at 0/n and n/n the formula's
    exact 0 and 1 come out of floating point a hair inside (5.6e-17 at 0/3),
    which would make the interval miss its own rate.

    >>> wilson_interval(0, 0)
    (0.0, 1.0)
    >>> [round(x, 3) for x in wilson_interval(8, 10)]
    [0.49, 0.943]
    >>> wilson_interval(0, 3)[0], wilson_interval(10, 10)[1]
    (0.0, 1.0)
    """
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half)))


def evaluate(
    env: SQLToolEnv,
    policy: Policy,
    questions: Sequence[Task],
    max_turns: int = DEFAULT_MAX_TURNS,
    progress: bool = True,
) -> list[Episode]:
    """Play every question once with ``policy``.

    Args:
        env: The tool environment (in-process or over WebSocket).
        policy: The policy to evaluate.
        questions: Questions to play, in order.
        max_turns: Assistant turns per episode.
        progress: Show a tqdm progress bar.

    Returns:
        One episode per question.
    """
    bar = tqdm(questions, desc=f"{policy.name}", unit="ep", disable=not progress)
    episodes = []
    successes = 0
    for question in bar:
        episode = run_episode(env, policy, question, max_turns=max_turns)
        successes += episode.success
        episodes.append(episode)
        bar.set_postfix(success=f"{successes / len(episodes):.2f}", refresh=False)
    return episodes


def _rate(episodes: Sequence[Episode]) -> dict[str, Any]:
    n = len(episodes)
    wins = sum(e.success for e in episodes)
    return {
        "n": n,
        "success_rate": wins / n if n else 0.0,
        "ci95": list(wilson_interval(wins, n)),
    }


def summarize(episodes: Sequence[Episode]) -> dict[str, Any]:
    """Success rate with Wilson 95% CI, means and rates, per database and level.

    ``error_rate`` is the share of steps whose action failed (bad SQL, unknown
    table, ...); ``truncation_rate`` the share of episodes that ran out of steps
    or turns without answering.
    """
    n = len(episodes)
    steps = sum(e.steps for e in episodes)
    by_db: dict[str, list[Episode]] = defaultdict(list)
    by_level: dict[str, list[Episode]] = defaultdict(list)
    for episode in episodes:
        by_db[episode.db_id].append(episode)
        by_level[episode.difficulty].append(episode)
    return {
        **_rate(episodes),
        "mean_reward": sum(e.reward for e in episodes) / n if n else 0.0,
        "mean_steps": steps / n if n else 0.0,
        "error_rate": sum(e.errors for e in episodes) / steps if steps else 0.0,
        "truncation_rate": sum(e.truncated for e in episodes) / n if n else 0.0,
        "answer_rate": sum(e.answered for e in episodes) / n if n else 0.0,
        "per_database": {db: _rate(group) for db, group in sorted(by_db.items())},
        "per_difficulty": {
            lvl: _rate(group) for lvl, group in sorted(by_level.items())
        },
    }


def write_report(
    out_dir: Path,
    episodes: Iterable[Episode],
    summary: dict[str, Any],
    label: str,
) -> list[Path]:
    """Write trajectories, summary and plots under ``out_dir``.

    Args:
        out_dir: Output directory (created).
        episodes: The played episodes.
        summary: From :func:`summarize`, plus any run settings to record.
        label: Policy name for plot titles.

    Returns:
        The paths written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    episodes = list(episodes)
    trajectories = out_dir / TRAJECTORIES
    with trajectories.open("w", encoding="utf-8") as handle:
        for episode in episodes:
            handle.write(json.dumps(episode.to_record(), ensure_ascii=False) + "\n")
    summary_path = out_dir / SUMMARY
    summary_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    rate = f"{summary['success_rate']:.1%} of {summary['n']}"
    return [
        trajectories,
        summary_path,
        plot_success_by(
            summary,
            "per_difficulty",
            out_dir / "success_by_difficulty.png",
            f"{label}: success by difficulty ({rate})",
        ),
        plot_success_by(
            summary,
            "per_database",
            out_dir / "success_by_database.png",
            f"{label}: success by database",
        ),
        plot_steps_histogram(
            (e.steps for e in episodes),
            out_dir / "steps_per_episode.png",
            f"{label}: steps per episode",
        ),
    ]


@dataclass(frozen=True)
class EvaluationReport:
    """A finished evaluation: its summary and the files written."""

    summary: dict[str, Any]
    paths: list[Path]


def run_evaluation(
    policy: Policy,
    questions: Sequence[Task],
    out_dir: Path,
    *,
    data_dir: Path | None = None,
    env_url: str | None = None,
    split: str = "dev",
    max_turns: int = DEFAULT_MAX_TURNS,
    max_steps: int = DEFAULT_MAX_STEPS,
    label: str | None = None,
    settings: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> EvaluationReport:
    """Play every question with ``policy``, summarise, write the report.

    Args:
        policy: The policy to evaluate.
        questions: Questions to play, in order.
        out_dir: Where the trajectories, summary and plots go.
        data_dir: Data directory of the in-process environment.
        env_url: Play on a SQLEnv server over WebSocket instead.
        split: Split of the questions.
        max_turns: Assistant turns per episode.
        max_steps: Step budget per episode (in-process environment only).
        label: Name in plot titles (default: the policy's).
        settings: Run settings recorded in the summary.
        progress: Show a progress bar.

    Returns:
        The summary (see :func:`summarize`, plus policy, split, seconds and
        settings) and the paths written.
    """
    started = time.perf_counter()
    with SQLToolEnv(data_dir, env_url, split=split, max_steps=max_steps) as env:
        episodes = evaluate(env, policy, questions, max_turns, progress)
    summary = {
        **summarize(episodes),
        "policy": policy.name,
        "split": split,
        "seconds": round(time.perf_counter() - started, 2),
        "settings": {k: str(v) for k, v in (settings or {}).items()},
    }
    paths = write_report(out_dir, episodes, summary, label or policy.name)
    return EvaluationReport(summary, paths)
