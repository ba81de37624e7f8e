"""Your own databases and questions, in a directory (or a zip of one)::

    my_data/
        questions.jsonl          or questions.csv (a header line, then one row each)
        shop.sqlite              a database: <db_id>.sqlite ...
        school/school.sqlite     ... or <db_id>/<db_id>.sqlite (.sqlite3, .db too)

Each question (a JSON object per line, or a CSV row) has the fields

    question    the question the agent is asked                      required
    sql         the gold query; its result is the answer             required
    db_id       the database it is asked on (a file named as above)  required
    split       default "train"; any name of letters, digits, _ or -
    evidence    a hint shown with the question (BIRD's "evidence")
    difficulty  your label ("easy", "L2", ...)
    id          your id for the question (text or integer), unique

Ids in the bank are ``<dataset>/<split>/<i>``, ``i`` the question's position
among its split's lines in the file, like Spider's and BIRD's; your ``id`` is kept
as the question's ``source_id``. Difficulty levels are the labels your file uses,
in first-seen order; a file without any ``difficulty`` gets Spider's hardness
computed from each gold query (easy/medium/hard/extra), so curricula still work.

Every problem in the file is reported at once, each with its line number (a
missing, blank or mistyped field, an unknown db_id, a reused id, a bad split
name), and the build stops: a bank built from part of a file would not be the
file its author wrote. A gold query that fails when run is not a problem of the
file's form: its question is excluded with the reason, as for Spider and BIRD.
"""

import csv
import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sql_env.ingest.adapter import (
    Adapter,
    SourceData,
    SourceQuestion,
    ordered_levels,
    text_fields,
)
from sql_env.ingest.databases import SQLITE_SUFFIXES
from sql_env.ingest.sources import SourceError, SourceTree
from sql_env.ingest.sql_analysis import hardness
from sql_env.server.question_bank import SPIDER_LEVELS

NAME = "custom"
QUESTION_FILES = ("questions.jsonl", "questions.csv")
REQUIRED = ("question", "sql", "db_id")
OPTIONAL = ("split", "evidence", "difficulty", "id")
DEFAULT_SPLIT = "train"
SPLIT_NAME = re.compile(r"[A-Za-z0-9_-]+")
MAX_LISTED = 20  # database names listed in one problem line


def find_questions(tree: SourceTree) -> Path:
    """The one questions file of the source.

    Raises:
        SourceError: There is none, or more than one.
    """
    found = [p for name in QUESTION_FILES for p in tree.find(name)]
    if len(found) == 1:
        return found[0]
    if found:
        raise SourceError(
            [str(p) for p in found], "Several question files; keep exactly one:"
        )
    raise SourceError(
        [f"no {' or '.join(QUESTION_FILES)} in {tree}"],
        "Not a custom dataset (see docs/datasets.md):",
    )


def find_sqlite_files(folder: Path) -> tuple[dict[str, Path], dict[str, list[Path]]]:
    """``<db_id>.sqlite`` and ``<db_id>/<db_id>.sqlite`` files in ``folder``.

    Returns:
        The file of each db_id, and the db_ids with more than one candidate file.
    """
    candidates: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in SQLITE_SUFFIXES:
            candidates.setdefault(path.stem, []).append(path)
        elif path.is_dir():
            for suffix in SQLITE_SUFFIXES:
                nested = path / f"{path.name}{suffix}"
                if nested.is_file():
                    candidates.setdefault(path.name, []).append(nested)
    unique = {db_id: paths[0] for db_id, paths in candidates.items()}
    ambiguous = {db_id: p for db_id, p in candidates.items() if len(p) > 1}
    return unique, ambiguous


def read_lines(path: Path) -> Iterator[tuple[int, Any, list[str]]]:
    """``(line number, record, problems)`` for each question line of the file.

    A JSONL line is a JSON object; a CSV row becomes a dict of its non-empty cells
    (an empty cell is an absent field), numbered by the line it starts on. Blank
    lines are skipped. A CSV header without a required column is one problem, on
    line 1, and no row is read.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        yield 1, None, [f"not UTF-8 text ({exc.reason} at byte {exc.start})"]
        return
    if path.suffix == ".jsonl":
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line), []
            except json.JSONDecodeError as exc:
                yield number, None, [f"not valid JSON ({exc.msg}, column {exc.colno})"]
        return
    rows = csv.reader(text.splitlines(keepends=True))
    header = [name.strip() for name in next(rows, [])]
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        yield 1, None, [f"the header has no column {name!r}" for name in missing]
        return
    start = rows.line_num + 1
    for row in rows:
        number, start = start, rows.line_num + 1
        if not any(cell.strip() for cell in row):
            continue
        problems = []
        if len(row) > len(header):
            problems.append(f"{len(row)} cells, the header has {len(header)}")
        cells = zip(header, row, strict=False)  # extra cells: reported above
        record = {name: cell for name, cell in cells if cell != ""}
        yield number, record, problems


def read(tree: SourceTree) -> SourceData:
    """The questions file and its databases; every bad line reported at once."""
    path = find_questions(tree)
    databases, ambiguous = find_sqlite_files(path.parent)
    splits: dict[str, list[SourceQuestion]] = {}
    problems: list[str] = []
    unused: dict[str, int] = {}
    id_lines: dict[str, int] = {}
    for number, record, bad in read_lines(path):
        where = f"{path.name} line {number}"
        if bad:
            problems += [f"{where}: {problem}" for problem in bad]
            continue
        for name in record if isinstance(record, dict) else ():
            if name not in (*REQUIRED, *OPTIONAL):
                unused.setdefault(name, number)
        question, bad = _check(record, where, databases, ambiguous, id_lines)
        if question.source_id is not None:
            id_lines.setdefault(question.source_id, number)
        problems += bad
        if not bad:
            splits.setdefault(question.split, []).append(question)
    if not problems and not splits:
        problems.append(f"{path.name}: no questions")
    if problems:
        raise SourceError(problems, f"{path} has {len(problems)} problem(s):")
    notes = [
        f"{path.name}: field {name!r} (first on line {line}) is not used; fields "
        f"are {', '.join((*REQUIRED, *OPTIONAL))}"
        for name, line in unused.items()
    ]
    splits, levels, note = _levels(splits)
    used = {q.db_id for questions in splits.values() for q in questions}
    chosen = {db_id: p for db_id, p in databases.items() if db_id in used}
    return SourceData(
        splits=splits,
        databases=chosen,
        levels=levels,
        files=(path, *chosen.values()),
        notes=(*notes, *note),
    )


def _check(
    record: Any,
    where: str,
    databases: dict[str, Path],
    ambiguous: dict[str, list[Path]],
    id_lines: dict[str, int],
) -> tuple[SourceQuestion, list[str]]:
    """One line's question, and its problems (the question is unusable if any).

    Args:
        id_lines: The line of each id seen so far, to report a reused one.
    """
    fields, bad = text_fields(record, where, REQUIRED, OPTIONAL)
    split = fields.get("split", DEFAULT_SPLIT)
    if not SPLIT_NAME.fullmatch(split):
        bad.append(f"{where}: split {split!r} is not letters, digits, _ or -")
    db_id = fields.get("db_id", "")
    if "db_id" in fields and db_id not in databases:
        bad.append(f"{where}: unknown db_id {db_id!r}; {_known(databases)}")
    elif db_id in ambiguous:
        names = ", ".join(p.name for p in ambiguous[db_id])
        bad.append(f"{where}: db_id {db_id!r} matches several files: {names}")
    source_id = fields.get("id") if fields.get("id", "").strip() else None
    if source_id is not None and source_id in id_lines:
        bad.append(
            f"{where}: id {source_id!r} is already used on line {id_lines[source_id]}"
        )
    question = SourceQuestion(
        split=split,
        db_id=db_id,
        question=fields.get("question", ""),
        sql=fields.get("sql", ""),
        evidence=fields.get("evidence", ""),
        difficulty=fields.get("difficulty", ""),
        source_id=source_id,
    )
    return question, bad


def _levels(
    splits: dict[str, list[SourceQuestion]],
) -> tuple[dict[str, list[SourceQuestion]], tuple[str, ...], list[str]]:
    """The file's own levels, or Spider's hardness when it gives none."""
    seen = [q.difficulty for questions in splits.values() for q in questions]
    if any(seen):
        return splits, ordered_levels((), seen), []
    rated = {
        split: [_with_hardness(q) for q in questions]
        for split, questions in splits.items()
    }
    note = "no difficulty given: levels are Spider's hardness of each gold query"
    return rated, SPIDER_LEVELS, [note]


def _with_hardness(q: SourceQuestion) -> SourceQuestion:
    return dataclasses.replace(q, difficulty=hardness(q.sql))


def _known(databases: dict[str, Path]) -> str:
    if not databases:
        return "no <db_id>.sqlite or <db_id>/<db_id>.sqlite beside the file"
    names = sorted(databases)
    listed = ", ".join(names[:MAX_LISTED])
    more = f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
    return f"databases found: {listed}{more}"


ADAPTER = Adapter(NAME, read)
