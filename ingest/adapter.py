"""What a dataset adapter is, and what it hands to the build.

An adapter knows one dataset's published layout. Given the source's local
directories (a ``SourceTree``, from ``sources.resolve``) it finds the question
files and the databases, checks every record, and returns a ``SourceData``: each
split's questions in source order (a question's position there becomes its id),
the database files by db_id, and the dataset's difficulty levels. It runs no SQL;
the build verifies the databases and runs the golds.
"""

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sql_env.ingest.sources import SourceError, SourceTree

# Fields that may be written as integers in JSON (BIRD's question_id).
ID_FIELDS = frozenset({"id", "question_id"})


@dataclass(frozen=True, slots=True)
class SourceQuestion:
    """One question as its source gives it.

    Args:
        difficulty: The dataset's level for it, or ``""`` where it has none.
        source_id: The id the source file gives it, if any.
    """

    split: str
    db_id: str
    question: str
    sql: str
    evidence: str = ""
    difficulty: str = ""
    source_id: str | None = None


@dataclass(frozen=True)
class SourceData:
    """Everything an adapter read from a source.

    Args:
        splits: Each split's questions in source-file order, splits in build order.
        databases: The database file for each db_id the source holds.
        levels: Difficulty levels, easiest first.
        files: Every file read, for the build's fingerprint.
        notes: What the build should tell the user (ignored fields, shadowed
            databases); not errors.
    """

    splits: dict[str, list[SourceQuestion]]
    databases: dict[str, Path]
    levels: tuple[str, ...]
    files: tuple[Path, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Adapter:
    """A named dataset layout.

    Args:
        name: The adapter's name, also the default dataset name.
        read: Reads a ``SourceData`` from the source's directories.
        default_sources: Where the data comes from when no source is given;
            empty when the user must name one.
    """

    name: str
    read: Callable[[SourceTree], SourceData]
    default_sources: Callable[[], list[str]] = field(default=lambda: [])


def load_json_records(path: Path) -> list[Any]:
    """A JSON array file (Spider's and BIRD's question files).

    Raises:
        SourceError: The file is not JSON, or not an array.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError([f"{path}: not a JSON file ({exc})"]) from None
    if not isinstance(data, list):
        raise SourceError([f"{path}: expected a JSON array of questions"])
    return data


def text_fields(
    record: Any, where: str, required: Sequence[str], optional: Sequence[str] = ()
) -> tuple[dict[str, str], list[str]]:
    """A record's fields as text, and what is wrong with them.

    Required fields must be non-blank strings; optional ones may be absent. An
    integer id is read as its text (BIRD's ``question_id``).

    Args:
        record: One parsed record.
        where: How to name the record in a problem ("dev.json record 12").
        required: Fields that must be present.
        optional: Fields that may be present.

    Returns:
        The fields found, and one problem line per bad field.
    """
    if not isinstance(record, dict):
        return {}, [f"{where}: expected an object, got {_kind(record)}"]
    values: dict[str, str] = {}
    problems: list[str] = []
    for name in (*required, *optional):
        value = record.get(name)
        if value is None:
            if name in required:
                problems.append(f"{where}: missing field {name!r}")
            continue
        if isinstance(value, int) and not isinstance(value, bool) and name in ID_FIELDS:
            value = str(value)
        if not isinstance(value, str):
            problems.append(f"{where}: field {name!r} must be text, got {_kind(value)}")
        elif name in required and not value.strip():
            problems.append(f"{where}: field {name!r} is blank")
        else:
            values[name] = value
    return values, problems


def read_question_file(
    path: Path,
    split: str,
    required: Sequence[str],
    optional: Sequence[str],
    make: Callable[[str, dict[str, str]], SourceQuestion],
) -> tuple[list[SourceQuestion], list[str]]:
    """A JSON array of question records: the good ones, and every problem.

    Args:
        path: The file (``dev.json``, ``train_spider.json``, ...).
        split: The split its questions belong to.
        required: Fields every record must have, as text.
        optional: Fields a record may have.
        make: Builds a question from the split and a good record's fields.
    """
    questions: list[SourceQuestion] = []
    problems: list[str] = []
    for i, record in enumerate(load_json_records(path)):
        fields, bad = text_fields(record, f"{path.name} record {i}", required, optional)
        problems += bad
        if not bad:
            questions.append(make(split, fields))
    return questions, problems


def ordered_levels(known: Sequence[str], seen: Sequence[str]) -> tuple[str, ...]:
    """The known levels, then any other level the source used, in first-seen order."""
    levels = list(known)
    for level in seen:
        if level and level not in levels:
            levels.append(level)
    return tuple(levels)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def choose_databases(
    splits: dict[str, list[SourceQuestion]], folders: dict[str, dict[str, Path]]
) -> tuple[dict[str, Path], list[str]]:
    """One file per db_id: from the folder of the first split that uses it.

    A split looks in its own database folder first, then in the others' (a
    question file may use a database shipped with another split). The bank holds
    one database per db_id, so when a later split's own folder holds a different
    file under the same name, that file is left out, with a note.

    Args:
        splits: Each split's questions.
        folders: Each split's database files by db_id.

    Returns:
        The chosen files by db_id, and the notes.
    """
    chosen: dict[str, Path] = {}
    notes: list[str] = []
    for split, questions in splits.items():
        own = folders.get(split, {})
        for db_id in dict.fromkeys(q.db_id for q in questions):
            path = own.get(db_id) or next(
                (found[db_id] for found in folders.values() if db_id in found), None
            )
            if path is None:
                continue
            first = chosen.setdefault(db_id, path)
            if first != path and first.stat().st_size != path.stat().st_size:
                notes.append(
                    f"database {db_id}: {split} ships a different file ({path}); "
                    f"using {first}"
                )
    return chosen, notes
