"""The question bank: its format, its writer and its reader, in one place.

Each dataset is built (``make data``) into its own directory under the data
directory, and is read back here:

    data/<dataset>/bank.sqlite                       questions, gold results, schemas
    data/<dataset>/databases/<db_id>/<db_id>.sqlite  the read-only databases
    data/<dataset>/report.json, report.md            what the build kept and why not

The bank is a SQLite file because two kinds of readers want different parts of it.
The server loads every question's public face and every schema once per process
(``load_bank``), so constructing an environment, which OpenEnv does per WebSocket
session and per HTTP request, costs a dictionary lookup; the server never holds a
gold result. The SQL workers look up one question's gold result by id when they
score an answer (``read_gold``), without parsing the rest of the bank.

A bank also records its dataset's splits and ordered difficulty levels, which differ
by dataset (``QuestionBank.splits``, ``.levels``). ``sql_env.ingest`` writes banks.
"""

import functools
import json
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sql_env

DEFAULT_DATA_DIR = Path(sql_env.__file__).resolve().parent / "data"
DEFAULT_DATASET = "spider"
# Spider's splits and hardness levels; other datasets name their own in their bank.
SPLITS = ("train", "dev")
SPIDER_LEVELS = ("easy", "medium", "hard", "extra")
BANK_FILE = "bank.sqlite"
# Bump whenever the tables below or the meaning of a column change.
BANK_FORMAT = 4
BANKS_CACHED = 32  # (dataset, bank file) pairs kept loaded per process

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE question (
    id TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    split TEXT NOT NULL,
    db_id TEXT NOT NULL,
    question TEXT NOT NULL,
    evidence TEXT NOT NULL,
    gold_sql TEXT NOT NULL,
    gold_columns TEXT NOT NULL,
    order_matters INTEGER NOT NULL,
    difficulty TEXT NOT NULL,
    tables_used TEXT NOT NULL,
    flags TEXT NOT NULL,
    excluded TEXT,
    source_id TEXT,
    gold_rows TEXT NOT NULL
);
CREATE TABLE db_schema (db_id TEXT PRIMARY KEY, tables TEXT NOT NULL);
"""
_PUBLIC_COLUMNS = (
    "id, split, db_id, question, evidence, gold_sql, gold_columns, order_matters, "
    "difficulty, tables_used, flags, excluded, source_id"
)


class BankFormatError(RuntimeError):
    """The bank is missing, or was written by a SQLEnv with another format."""


@dataclass(frozen=True, slots=True)
class Question:
    """One question and its gold query, without its gold result.

    The gold result lives only in the bank file and in the SQL workers that score
    answers; the server process never holds it. ``gold_rows`` reads it from the
    bank on each access, for baselines, data tools and tests.

    ``id`` is ``<dataset>/<split>/<i>``, ``i`` the position in the split's source
    file; ``source_id`` is the id that file gave it, if any. ``difficulty`` is one of
    ``QuestionBank.levels``, or ``""`` where the source gives no difficulty.
    """

    id: str
    split: str
    db_id: str
    question: str
    gold_sql: str
    gold_columns: tuple[str, ...]
    order_matters: bool
    difficulty: str
    tables_used: tuple[str, ...]
    flags: tuple[str, ...] = ()
    excluded: str | None = None
    evidence: str = ""
    source_id: str | None = None
    bank: str = field(default="", repr=False, compare=False)

    @property
    def dataset(self) -> str:
        return self.id.split("/", 1)[0]

    @property
    def gold_rows(self) -> tuple[tuple[Any, ...], ...]:
        """The gold result, read from the bank file (never cached in memory)."""
        return read_gold(Path(self.bank), self.id).rows


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str


@dataclass(frozen=True, slots=True)
class ForeignKey:
    column: str
    ref_table: str
    ref_column: str | None


@dataclass(frozen=True, slots=True)
class Table:
    """What DESCRIBE reports about one table, read from the database at build."""

    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    foreign_keys: tuple[ForeignKey, ...]
    row_count: int

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Table":
        return cls(
            name=record["name"],
            columns=tuple(Column(*c) for c in record["columns"]),
            primary_key=tuple(record["primary_key"]),
            foreign_keys=tuple(ForeignKey(*fk) for fk in record["foreign_keys"]),
            row_count=record["row_count"],
        )

    def to_record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "columns": [[c.name, c.type] for c in self.columns],
            "primary_key": list(self.primary_key),
            "foreign_keys": [
                [fk.column, fk.ref_table, fk.ref_column] for fk in self.foreign_keys
            ],
            "row_count": self.row_count,
        }


@dataclass(frozen=True, slots=True)
class DatabaseSchema:
    """The tables of one database, looked up case-insensitively."""

    db_id: str
    tables: tuple[Table, ...]

    @property
    def table_names(self) -> list[str]:
        return [t.name for t in self.tables]

    def find(self, name: str) -> Table | None:
        wanted = name.strip().strip("`\"'[]").strip().lower()
        for table in self.tables:
            if table.name.lower() == wanted:
                return table
        return None


@dataclass(frozen=True, slots=True)
class GoldRecord:
    """What scoring one question needs: its gold result and whether order counts."""

    question_id: str
    rows: tuple[tuple[Any, ...], ...]
    order_matters: bool


class QuestionBank:
    """One dataset's questions, its databases' schema facts and their paths.

    ``splits`` are in build order, ``levels`` (difficulty) easiest first.
    """

    def __init__(
        self,
        data_dir: Path,
        dataset: str,
        questions: Iterable[Question],
        schemas: dict[str, DatabaseSchema],
        stamp: dict[str, Any] | None = None,
        *,
        splits: Sequence[str] = SPLITS,
        levels: Sequence[str] = SPIDER_LEVELS,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.dataset = dataset
        self.schemas = schemas
        self.stamp = stamp or {}
        self.splits = tuple(splits)
        self.levels = tuple(levels)
        self._questions = {q.id: q for q in questions}
        self._eligible: dict[str, list[Question]] = {s: [] for s in self.splits}
        # A database may serve several splits (BIRD's dev and mini-dev, a custom
        # file's splits); Spider's splits are disjoint by database.
        self._db_splits: dict[str, dict[str, None]] = {}
        for q in self._questions.values():
            self._db_splits.setdefault(q.db_id, {})[q.split] = None
            if q.excluded is None:
                self._eligible.setdefault(q.split, []).append(q)
        self._by_db: dict[tuple[str, str], list[Question]] = {}
        for split, questions_ in self._eligible.items():
            for q in questions_:
                self._by_db.setdefault((split, q.db_id), []).append(q)

    def __len__(self) -> int:
        return len(self._questions)

    @property
    def path(self) -> Path:
        """The bank file, which the SQL workers read gold results from."""
        return bank_path(self.data_dir, self.dataset)

    def get(self, question_id: str) -> Question:
        """The question with this id, excluded ones included.

        Raises:
            KeyError: No such question.
        """
        return self._questions[question_id]

    def all(self, split: str) -> list[Question]:
        """Every question of a split in id order, excluded ones included."""
        return [q for q in self._questions.values() if q.split == split]

    def eligible(
        self, split: str, db_id: str | None = None, difficulty: str | None = None
    ) -> list[Question]:
        """Questions that may be sampled, optionally of one database or level."""
        pool = (
            self._eligible.get(split, [])
            if db_id is None
            else self._by_db.get((split, db_id), [])
        )
        if difficulty is not None:
            pool = [q for q in pool if q.difficulty == difficulty]
        return pool

    def db_ids(self, split: str | None = None) -> list[str]:
        """Databases that have questions, of one split or all."""
        dbs = self._db_splits.items()
        return sorted(db for db, homes in dbs if split is None or split in homes)

    def split_of(self, db_id: str) -> str | None:
        """The first split with questions on this database (see ``splits_of``)."""
        return next(iter(self._db_splits.get(db_id, ())), None)

    def splits_of(self, db_id: str) -> tuple[str, ...]:
        """Every split with questions on this database, in build order."""
        return tuple(self._db_splits.get(db_id, ()))

    def schema(self, db_id: str) -> DatabaseSchema:
        return self.schemas[db_id]

    def db_path(self, db_id: str) -> Path:
        return database_path(self.data_dir, self.dataset, db_id)


def dataset_dir(data_dir: Path, dataset: str = DEFAULT_DATASET) -> Path:
    return Path(data_dir) / dataset


def bank_path(data_dir: Path, dataset: str = DEFAULT_DATASET) -> Path:
    return dataset_dir(data_dir, dataset) / BANK_FILE


def database_path(data_dir: Path, dataset: str, db_id: str) -> Path:
    return dataset_dir(data_dir, dataset) / "databases" / db_id / f"{db_id}.sqlite"


def list_datasets(data_dir: Path) -> list[str]:
    """The datasets built under ``data_dir`` (directories holding a bank)."""
    root = Path(data_dir)
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob(f"*/{BANK_FILE}"))


def _connect_read_only(path: Path) -> sqlite3.Connection:
    uri = f"{Path(path).resolve().as_uri()}?mode=ro&immutable=1"
    return sqlite3.connect(uri, uri=True, check_same_thread=False)


def read_stamp(path: Path) -> dict[str, Any] | None:
    """The build stamp of a bank file, or None if it is missing or unreadable."""
    if not Path(path).is_file():
        return None
    try:
        conn = _connect_read_only(path)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'stamp'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return json.loads(row[0]) if row else None


def _check_format(conn: sqlite3.Connection, path: Path) -> None:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
    except sqlite3.Error:
        row = None
    found = int(row[0]) if row else None
    if found != BANK_FORMAT:
        raise BankFormatError(
            f"The question bank {path} has format {found}, this SQLEnv reads format "
            f"{BANK_FORMAT}: run `make data` to rebuild it."
        )


def write_bank(
    path: Path,
    *,
    questions: Sequence[tuple[Question, Sequence[Sequence[Any]]]],
    schemas: dict[str, Sequence[Table]],
    stamp: dict[str, Any],
    splits: Sequence[str],
    levels: Sequence[str],
) -> None:
    """Write a dataset's bank atomically: a reader sees the old file or the new one.

    Args:
        path: The ``bank.sqlite`` to (re)write.
        questions: Each question with its gold result rows (JSON-compatible values).
        schemas: Each database's tables.
        stamp: What the build was made from (source fingerprint, rules version);
            ``read_stamp`` returns it so a build can tell it is up to date.
        splits: The dataset's splits, in order.
        levels: The dataset's difficulty levels, easiest first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".bank-", suffix=".tmp")
    os.close(handle)
    try:
        conn = sqlite3.connect(tmp)
        try:
            conn.executescript(_SCHEMA)
            conn.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [
                    ("format", str(BANK_FORMAT)),
                    ("stamp", json.dumps(stamp)),
                    ("splits", json.dumps(list(splits))),
                    ("levels", json.dumps(list(levels))),
                ],
            )
            conn.executemany(
                "INSERT INTO question VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        q.id,
                        position,
                        q.split,
                        q.db_id,
                        q.question,
                        q.evidence,
                        q.gold_sql,
                        json.dumps(q.gold_columns),
                        int(q.order_matters),
                        q.difficulty,
                        json.dumps(q.tables_used),
                        json.dumps(q.flags),
                        q.excluded,
                        q.source_id,
                        json.dumps([list(row) for row in rows]),
                    )
                    for position, (q, rows) in enumerate(questions)
                ],
            )
            conn.executemany(
                "INSERT INTO db_schema VALUES (?, ?)",
                [
                    (db_id, json.dumps([t.to_record() for t in tables]))
                    for db_id, tables in schemas.items()
                ],
            )
            conn.commit()
        finally:
            conn.close()
        os.chmod(tmp, 0o444)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_bank(
    data_dir: Path = DEFAULT_DATA_DIR, dataset: str = DEFAULT_DATASET
) -> QuestionBank:
    """Read a dataset's questions and schemas once per process and bank file.

    A rebuilt bank (``make data``) is read again; an unchanged one costs a stat.

    Raises:
        BankFormatError: The bank is missing (run ``make data``) or was written in
            another format.
    """
    path = bank_path(data_dir, dataset)
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise BankFormatError(
            f"No question bank for dataset {dataset!r} at {path}; run `make data` "
            "to build it."
        ) from None
    version = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    return _load_bank(Path(data_dir), dataset, version)


@functools.lru_cache(maxsize=BANKS_CACHED)
def _load_bank(data_dir: Path, dataset: str, version: tuple) -> QuestionBank:
    """``load_bank`` for one version (inode, size, mtime) of the bank file."""
    path = bank_path(data_dir, dataset)
    conn = _connect_read_only(path)
    try:
        _check_format(conn, path)
        meta = {
            key: json.loads(value)
            for key, value in conn.execute("SELECT key, value FROM meta")
        }
        questions = [
            Question(
                id=row[0],
                split=row[1],
                db_id=row[2],
                question=row[3],
                evidence=row[4],
                gold_sql=row[5],
                gold_columns=tuple(json.loads(row[6])),
                order_matters=bool(row[7]),
                difficulty=row[8],
                tables_used=tuple(json.loads(row[9])),
                flags=tuple(json.loads(row[10])),
                excluded=row[11],
                source_id=row[12],
                bank=str(path),
            )
            for row in conn.execute(
                f"SELECT {_PUBLIC_COLUMNS} FROM question ORDER BY position"
            )
        ]
        schemas = {
            db_id: DatabaseSchema(
                db_id=db_id,
                tables=tuple(Table.from_record(t) for t in json.loads(tables)),
            )
            for db_id, tables in conn.execute("SELECT db_id, tables FROM db_schema")
        }
    finally:
        conn.close()
    return QuestionBank(
        Path(data_dir),
        dataset,
        questions,
        schemas,
        meta["stamp"],
        splits=meta["splits"],
        levels=meta["levels"],
    )


def read_gold(path: Path, question_id: str) -> GoldRecord:
    """One question's gold result, read by id from a bank file.

    Raises:
        BankFormatError: The file is not a bank of this format.
        KeyError: No such question.
    """
    conn = _connect_read_only(path)
    try:
        _check_format(conn, Path(path))
        row = conn.execute(
            "SELECT gold_rows, order_matters FROM question WHERE id = ?",
            (question_id,),
        ).fetchone()
    finally:
        conn.close()
    if row is None:
        raise KeyError(question_id)
    rows = tuple(tuple(r) for r in json.loads(row[0]))
    return GoldRecord(question_id, rows, bool(row[1]))
