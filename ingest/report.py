"""The build report: what each split kept, what it excluded and why.

Written beside the bank as ``report.json`` (for tools and tests) and ``report.md``
(for people), and summed up in a few lines on the terminal.
"""

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sql_env.server.question_bank import Question

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
UNRATED = "unrated"  # the difficulty count of questions without a level


def reason(question: Question) -> str | None:
    """The exclusion reason without its detail (``gold_error: ...``: ``gold_error``)."""
    return None if question.excluded is None else question.excluded.split(":")[0]


def make_report(
    *,
    dataset: str,
    adapter: str,
    levels: Sequence[str],
    questions: dict[str, list[Question]],
    databases: dict[str, Any],
    notes: Sequence[str],
) -> dict[str, Any]:
    """The report as JSON-compatible data.

    Args:
        dataset: The dataset's name (its directory under the data directory).
        adapter: The adapter that read it.
        levels: The dataset's difficulty levels.
        questions: Each split's questions, excluded ones included.
        databases: ``copied`` (count), ``failed_integrity`` and ``missing`` (ids).
        notes: What the adapter or the build noticed that is not an error.
    """
    report: dict[str, Any] = {
        "dataset": dataset,
        "adapter": adapter,
        "levels": list(levels),
        "splits": {},
        "databases": databases,
        "notes": list(notes),
        "excluded": [],
    }
    for split, items in questions.items():
        reasons = Counter(reason(q) for q in items if q.excluded)
        playable = [q for q in items if q.excluded is None]
        counts = Counter(q.difficulty or UNRATED for q in playable)
        difficulty = {level: counts.get(level, 0) for level in levels}
        if counts.get(UNRATED):
            difficulty[UNRATED] = counts[UNRATED]
        report["splits"][split] = {
            "questions": len(items),
            "eligible": len(playable),
            "excluded": dict(sorted(reasons.items())),
            "databases": len({q.db_id for q in items}),
            "difficulty": difficulty,
        }
        report["excluded"] += [
            {
                "id": q.id,
                "source_id": q.source_id,
                "db_id": q.db_id,
                "reason": q.excluded,
            }
            for q in items
            if q.excluded
        ]
    return report


def write_report(folder: Path, report: dict[str, Any]) -> None:
    """``report.json`` and ``report.md`` in the dataset's folder."""
    (folder / REPORT_JSON).write_text(json.dumps(report, indent=1), encoding="utf-8")
    (folder / REPORT_MD).write_text(to_markdown(report), encoding="utf-8")


def read_report(folder: Path) -> dict[str, Any] | None:
    path = folder / REPORT_JSON
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def to_markdown(report: dict[str, Any]) -> str:
    levels = list(report["levels"])
    if any(UNRATED in s["difficulty"] for s in report["splits"].values()):
        levels.append(UNRATED)
    lines = [
        f"# Question bank build report: {report['dataset']}",
        "",
        f"Adapter `{report['adapter']}`; difficulty levels: "
        f"{', '.join(report['levels'])}.",
        "",
        "| split | questions | eligible | databases | excluded (by reason) |",
        "|---|---:|---:|---:|---|",
    ]
    for split, s in report["splits"].items():
        reasons = ", ".join(f"{k}: {v}" for k, v in s["excluded"].items()) or "none"
        lines.append(
            f"| {split} | {s['questions']} | {s['eligible']} | {s['databases']} "
            f"| {reasons} |"
        )
    lines += [
        "",
        "Eligible questions by difficulty:",
        "",
        "| split | " + " | ".join(levels) + " |",
        "|---|" + "---:|" * len(levels),
    ]
    for split, s in report["splits"].items():
        counts = [str(s["difficulty"].get(level, 0)) for level in levels]
        lines.append(f"| {split} | " + " | ".join(counts) + " |")
    dbs = report["databases"]
    lines += [
        "",
        f"Databases: {dbs['copied']} installed, {len(dbs['failed_integrity'])} failed "
        f"integrity_check ({', '.join(dbs['failed_integrity']) or 'none'}), "
        f"{len(dbs['missing'])} referenced but missing "
        f"({', '.join(dbs['missing']) or 'none'}).",
    ]
    if report["notes"]:
        lines += ["", "## Notes", "", *(f"- {note}" for note in report["notes"])]
    lines += [
        "",
        "## Excluded questions",
        "",
        "| id | source id | db | reason |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {e['id']} | {e['source_id'] or ''} | {e['db_id']} | {_cell(e['reason'])} |"
        for e in report["excluded"]
    ]
    return "\n".join(lines) + "\n"


def summary(report: dict[str, Any]) -> list[str]:
    """A few lines for the terminal."""
    lines = []
    for split, s in report["splits"].items():
        reasons = ", ".join(f"{k} {v}" for k, v in s["excluded"].items()) or "none"
        lines.append(
            f"{split:>5}: {s['questions']} questions, {s['eligible']} eligible, "
            f"{s['databases']} databases; excluded: {reasons}"
        )
    dbs = report["databases"]
    missing = ", ".join(dbs["missing"]) or "none"
    failed = ", ".join(dbs["failed_integrity"]) or "none"
    lines.append(
        f"databases: {dbs['copied']} installed; missing: {missing}; "
        f"failed integrity_check: {failed}"
    )
    lines += [f"note: {note}" for note in report["notes"]]
    return lines


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell (one line, no column breaks)."""
    return " ".join(text.split()).replace("|", "\\|")
