"""Matplotlib PNGs for evaluation summaries and GRPO training logs.

Every function takes plain records (the JSON lines the scripts write), saves one
PNG and returns its path, so plots can be redrawn from files after a run.
"""

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers, CI or Colab's executor

import matplotlib.pyplot as plt  # noqa: E402

# Curves from the GRPO log: (JSONL key, label).
LEARNING_CURVES = (
    ("reward", "mean reward"),
    ("success", "success rate"),
    ("tool_calls", "tool calls per rollout"),
)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All records of a JSON-lines file."""
    with Path(path).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _save(fig: Any, out_path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    return Path(out_path)


def _bar(
    ax: Any, labels: Sequence[str], groups: Mapping[str, Mapping[str, Any]]
) -> None:
    rates = [groups[label]["success_rate"] for label in labels]
    counts = [groups[label]["n"] for label in labels]
    bars = ax.bar(range(len(labels)), rates, color="#4c72b0")
    ax.set_xticks(
        range(len(labels)),
        labels,
        rotation=45 if len(labels) > 4 else 0,
        ha="right" if len(labels) > 4 else "center",
    )
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate")
    _label_bars(ax, bars, [f"n={count}" for count in counts], fontsize=7)


def _label_bars(ax: Any, bars: Any, texts: Sequence[str], fontsize: int = 9) -> None:
    for bar, text in zip(bars, texts, strict=True):
        ax.annotate(
            text,
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=fontsize,
        )


def plot_success_by(
    summary: Mapping[str, Any], key: str, out_path: Path, title: str
) -> Path:
    """Bar chart of ``summary[key]`` (per-group ``success_rate`` and ``n``).

    Args:
        summary: An evaluation summary (see ``scripts/evaluate.py``).
        key: ``"per_difficulty"`` or ``"per_database"``.
        out_path: Where to write the PNG.
        title: Figure title.

    Returns:
        ``out_path``.
    """
    groups = summary[key]
    labels = list(groups)  # the summary's order: levels easiest first, ids sorted
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(labels) + 2), 3.5))
    _bar(ax, labels, groups)
    ax.set_title(title)
    return _save(fig, out_path)


def _errors(groups: Sequence[Mapping[str, Any]], rate_key: str) -> list[list[float]]:
    """Distances from each rate to its CI bounds, clipped at 0 (for ``yerr``).

    Clipped: a summary written elsewhere may round a bound past its rate.
    """
    rates = [group[rate_key] for group in groups]
    return [
        [max(0.0, rate - g["ci95"][0]) for g, rate in zip(groups, rates, strict=True)],
        [max(0.0, g["ci95"][1] - rate) for g, rate in zip(groups, rates, strict=True)],
    ]


def plot_accuracy_by_difficulty(
    summary: Mapping[str, Any], out_path: Path, title: str
) -> Path:
    """Accuracy per difficulty level and overall, with 95% CIs.

    When the summary sampled several answers per question, pass@k and
    majority@k stand beside each accuracy bar.

    Args:
        summary: An evaluation summary (``metrics.summarize``).
        out_path: Where to write the PNG.
        title: Figure title.

    Returns:
        ``out_path``.
    """
    groups = {**summary["per_difficulty"], "all": summary}
    labels = list(groups)
    k = summary.get("samples", 1)
    series = [("accuracy", lambda g: g)]
    if k > 1:
        series += [
            (f"pass@{k}", lambda g: _as_rate(g["pass_at_k"])),
            (f"majority@{k}", lambda g: _as_rate(g["majority_at_k"])),
        ]
    width = 0.8 / len(series)
    fig, ax = plt.subplots(
        figsize=(max(4.5, len(labels) * (0.6 + 0.4 * len(series)) + 1.5), 3.8)
    )
    for i, (name, pick) in enumerate(series):
        picked = [pick(groups[label]) for label in labels]
        xs = [x + (i - (len(series) - 1) / 2) * width for x in range(len(labels))]
        ax.bar(
            xs,
            [g["success_rate"] for g in picked],
            width,
            yerr=_errors(picked, "success_rate"),
            capsize=3,
            label=name,
        )
    ticks = [f"{label}\nn={groups[label]['n']}" for label in labels]
    ax.set_xticks(range(len(labels)), ticks)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("share of questions (95% CI)")
    if len(series) > 1:
        ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return _save(fig, out_path)


def _as_rate(metric: Mapping[str, Any]) -> dict[str, Any]:
    return {"success_rate": metric["rate"], "ci95": metric["ci95"]}


def plot_pass_at_k(summary: Mapping[str, Any], out_path: Path, title: str) -> Path:
    """pass@k for k = 1 .. samples with its 95% CI band, and majority@k.

    Args:
        summary: An evaluation summary with ``pass_curve`` (sampled answers).
        out_path: Where to write the PNG.
        title: Figure title.

    Returns:
        ``out_path``.
    """
    curve = summary["pass_curve"]
    ks = [point["k"] for point in curve]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(ks, [p["rate"] for p in curve], marker="o", label="pass@k")
    ax.fill_between(
        ks, [p["ci95"][0] for p in curve], [p["ci95"][1] for p in curve], alpha=0.2
    )
    majority = summary["majority_at_k"]
    ax.errorbar(
        [majority["k"]],
        [majority["rate"]],
        yerr=_errors([_as_rate(majority)], "success_rate"),
        fmt="s",
        capsize=3,
        label=f"majority@{majority['k']}",
    )
    ax.set_xticks(ks)
    ax.set_xlabel("k (samples per question)")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of questions (95% CI)")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return _save(fig, out_path)


def plot_steps_histogram(steps: Iterable[int], out_path: Path, title: str) -> Path:
    """Histogram of steps per episode."""
    values = list(steps)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    top = max(values, default=1)
    # Bins centred on whole numbers of steps.
    bins = [edge - 0.5 for edge in range(0, top + 2)]
    ax.hist(values, bins=bins, color="#55a868", edgecolor="white")
    ax.set_xlabel("steps in episode")
    ax.set_ylabel("episodes")
    ax.set_title(title)
    return _save(fig, out_path)


def plot_learning_curves(
    logs: Mapping[str, Sequence[Mapping[str, Any]]], out_path: Path
) -> Path:
    """Reward, success and tool use per GRPO step, one line per run.

    Args:
        logs: Run label -> records of a ``train_log.jsonl`` (``step``, ``reward``,
            ``success``, ``tool_calls``).
        out_path: Where to write the PNG.

    Returns:
        ``out_path``.
    """
    fig, axes = plt.subplots(1, len(LEARNING_CURVES), figsize=(12, 3.5))
    for ax, (key, label) in zip(axes, LEARNING_CURVES, strict=True):
        for run, records in logs.items():
            points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", markersize=3, label=run)
        ax.set_xlabel("GRPO step")
        ax.set_title(label)
        if key == "success":
            ax.set_ylim(-0.02, 1.02)
    if len(logs) > 1:
        axes[0].legend(fontsize=8)
    return _save(fig, out_path)


def plot_policy_comparison(
    summaries: Mapping[str, Mapping[str, Any]], out_path: Path
) -> Path:
    """Success rate of several policies with their 95% Wilson intervals.

    Args:
        summaries: Policy label -> summary (``success_rate``, ``ci95``, ``n``).
        out_path: Where to write the PNG.

    Returns:
        ``out_path``.
    """
    labels = list(summaries)
    rates = [summaries[label]["success_rate"] for label in labels]
    errors = _errors([summaries[label] for label in labels], "success_rate")
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(labels) + 1.5), 3.5))
    ax.bar(labels, rates, yerr=errors, capsize=4, color="#4c72b0")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate (95% CI)")
    n = {summaries[label]["n"] for label in labels}
    ax.set_title(f"Success on {'/'.join(str(k) for k in sorted(n))} questions")
    return _save(fig, out_path)


def plot_stages(stages: Mapping[str, float], out_path: Path, title: str) -> Path:
    """Bar chart of one rate at successive stages of a run (overfit check)."""
    labels = list(stages)
    values = [stages[label] for label in labels]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(labels) + 1.5), 3.5))
    bars = ax.bar(labels, values, color="#55a868")
    _label_bars(ax, bars, [f"{value:.0%}" for value in values])
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("success rate")
    ax.set_title(title)
    return _save(fig, out_path)
