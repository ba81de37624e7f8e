"""Evaluate a policy over questions: episodes, a summary with 95% CIs, a table, plots.

``scripts/evaluate.py``, the demo and the notebook call :func:`run_evaluation`:
play every question ``samples`` times in one setting (dataset, schema, answer
format, evidence), group the answers for majority@k (``answer_groups``),
summarise (``metrics``), write the report. Nothing here needs torch.
"""

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from sql_env.server.question_bank import DEFAULT_DATA_DIR
from sql_env.server.sandbox import QUERY_TIMEOUT_S
from sql_env.training.answer_groups import AnswerGrouper
from sql_env.training.data import Task
from sql_env.training.environment import DEFAULT_MAX_STEPS, SQLToolEnv
from sql_env.training.metrics import summarize
from sql_env.training.plots import (
    plot_accuracy_by_difficulty,
    plot_pass_at_k,
    plot_steps_histogram,
    plot_success_by,
)
from sql_env.training.rollout import DEFAULT_MAX_TURNS, Episode, Policy, run_episode
from sql_env.training.settings import EpisodeSettings

TRAJECTORIES = "trajectories.jsonl"
SUMMARY = "summary.json"


def evaluate(
    env: SQLToolEnv,
    policy: Policy,
    questions: Sequence[Task],
    max_turns: int = DEFAULT_MAX_TURNS,
    progress: bool = True,
    samples: int = 1,
) -> list[Episode]:
    """Play every question ``samples`` times with ``policy``.

    Args:
        env: The tool environment (in-process or over WebSocket), reset with
            the evaluation's settings.
        policy: The policy to evaluate (it samples, if it does, on its own).
        questions: Questions to play, in order.
        max_turns: Assistant turns per episode.
        progress: Show a tqdm progress bar.
        samples: Episodes per question.

    Returns:
        The episodes, question by question (``Episode.sample`` numbers them).
    """
    if samples < 1:
        raise ValueError(f"samples must be at least 1, not {samples}.")
    bar = tqdm(
        total=len(questions) * samples,
        desc=policy.name,
        unit="ep",
        disable=not progress,
    )
    episodes = []
    successes = 0
    with bar:
        for question in questions:
            for sample in range(samples):
                episode = run_episode(env, policy, question, max_turns, sample)
                successes += episode.success
                episodes.append(episode)
                bar.update()
                bar.set_postfix(
                    success=f"{successes / len(episodes):.2f}", refresh=False
                )
    return episodes


def format_table(summary: Mapping[str, Any]) -> str:
    """The summary as a plain-text table: one row per difficulty, then all.

    Columns: questions, accuracy with its 95% CI and, when sampling, pass@k
    and majority@k.
    """
    sampled = summary.get("samples", 1) > 1
    k = summary.get("samples", 1)
    header = ["difficulty", "n", "accuracy", "95% CI"]
    if sampled:
        header += [f"pass@{k}", f"maj@{k}"]
    rows = [
        _table_row(level, group, sampled)
        for level, group in summary["per_difficulty"].items()
    ]
    rows.append(_table_row("all", summary, sampled))
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(cell).rjust(width) for cell, width in zip(r, widths, strict=True))
        for r in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _table_row(label: str, group: Mapping[str, Any], sampled: bool) -> list[str]:
    low, high = group["ci95"]
    row = [label, str(group["n"]), f"{group['success_rate']:.1%}"]
    row.append(f"{low:.1%}-{high:.1%}")
    if sampled:
        row += [
            f"{group['pass_at_k']['rate']:.1%}",
            f"{group['majority_at_k']['rate']:.1%}",
        ]
    return row


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
    setting = summary.get("setting", "")
    title = f"{label} ({setting})" if setting else label
    paths = [
        trajectories,
        summary_path,
        plot_accuracy_by_difficulty(
            summary, out_dir / "success_by_difficulty.png", title
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
    if "pass_curve" in summary:
        paths.append(plot_pass_at_k(summary, out_dir / "pass_at_k.png", title))
    return paths


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
    settings: EpisodeSettings | None = None,
    samples: int = 1,
    levels: Sequence[str] = (),
    data_dir: Path | None = None,
    env_url: str | None = None,
    max_turns: int = DEFAULT_MAX_TURNS,
    max_steps: int = DEFAULT_MAX_STEPS,
    query_timeout_s: float = QUERY_TIMEOUT_S,
    label: str | None = None,
    arguments: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> EvaluationReport:
    """Play every question ``samples`` times with ``policy``, summarise, report.

    Args:
        policy: The policy to evaluate.
        questions: Questions of ``settings.dataset`` to play, in order.
        out_dir: Where the trajectories, summary and plots go.
        settings: The episodes' dataset, schema, answer format and evidence.
        samples: Episodes per question (pass@k and majority@k when above 1).
        levels: The dataset's difficulty levels, easiest first.
        data_dir: Data directory of the in-process environment, and of the
            local runs that group SQL answers for majority@k.
        env_url: Play on a SQLEnv server over WebSocket instead.
        max_turns: Assistant turns per episode.
        max_steps: Step budget per episode (in-process environment only).
        query_timeout_s: Deadline of one SQL statement (in-process environment
            and the local runs of SQL answers; a server keeps its own).
        label: Name in plot titles (default: the policy's).
        arguments: Run arguments recorded in the summary.
        progress: Show a progress bar.

    Returns:
        The summary (see ``metrics.summarize``, plus policy, dataset, splits,
        settings, the answers' grouping, seconds and arguments) and the paths
        written.
    """
    settings = settings or EpisodeSettings()
    started = time.perf_counter()
    with SQLToolEnv(
        data_dir,
        env_url,
        max_steps=max_steps,
        reset_settings=settings.reset_kwargs(),
        query_timeout_s=query_timeout_s,
    ) as env:
        episodes = evaluate(env, policy, questions, max_turns, progress, samples)
    local_data = data_dir if data_dir is not None or env_url else DEFAULT_DATA_DIR
    grouper = AnswerGrouper(
        settings.answer, settings.dataset, local_data, query_timeout_s
    )
    keys = grouper.keys(episodes) if samples > 1 else None
    summary = {
        **summarize(episodes, keys, levels),
        "policy": policy.name,
        "dataset": settings.dataset,
        "splits": sorted({q.split for q in questions}),
        "settings": settings.reset_kwargs(),
        "setting": settings.label(),
        "majority_grouping": grouper.grouping if samples > 1 else None,
        "max_turns": max_turns,
        "max_steps": max_steps,
        "query_timeout_s": query_timeout_s,
        "seconds": round(time.perf_counter() - started, 2),
        "arguments": {k: str(v) for k, v in (arguments or {}).items()},
    }
    paths = write_report(out_dir, episodes, summary, label or policy.name)
    return EvaluationReport(summary, paths)
