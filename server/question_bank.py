"""The question bank and schema facts, loaded once per process and shared.

``scripts/build_data.py`` writes them; every environment instance reads them
through ``load_bank``, so constructing an environment (which OpenEnv does per
WebSocket session and per HTTP request) costs a dictionary lookup.
"""

import dataclasses
import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sql_env
from sql_env.server.verifier import Gold, prepare_gold

DEFAULT_DATA_DIR = Path(sql_env.__file__).resolve().parent / "data"
SPLITS = ("train", "dev")
HARDNESS_LEVELS = ("easy", "medium", "hard", "extra")
BANK_FORMAT = 1


@dataclass(frozen=True, slots=True)
class Question:
    """One Spider question with its gold result (server side only)."""

    id: str
    split: str
    db_id: str
    question: str
    gold_sql: str
    gold_columns: tuple[str, ...]
    gold_rows: tuple[tuple[Any, ...], ...]
    order_matters: bool
    hardness: str
    tables_used: tuple[str, ...]
    flags: tuple[str, ...] = ()
    excluded: str | None = None

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Question":
        return cls(
            id=record["id"],
            split=record["split"],
            db_id=record["db_id"],
            question=record["question"],
            gold_sql=record["gold_sql"],
            gold_columns=tuple(record["gold_columns"]),
            gold_rows=tuple(tuple(row) for row in record["gold_rows"]),
            order_matters=record["order_matters"],
            hardness=record["hardness"],
            tables_used=tuple(record["tables_used"]),
            flags=tuple(record.get("flags", ())),
            excluded=record.get("excluded"),
        )

    def to_record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # tuples become JSON lists


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


class QuestionBank:
    """All questions of all splits, the databases' schema facts and paths."""

    def __init__(
        self,
        data_dir: Path,
        questions: Iterable[Question],
        schemas: dict[str, DatabaseSchema],
    ) -> None:
        self.data_dir = data_dir
        self.schemas = schemas
        self._questions = {q.id: q for q in questions}
        self._golds: dict[str, Gold] = {}
        self._eligible: dict[str, list[Question]] = {s: [] for s in SPLITS}
        self._db_split: dict[str, str] = {}
        for q in self._questions.values():
            self._db_split.setdefault(q.db_id, q.split)
            if q.excluded is None:
                self._eligible[q.split].append(q)
        self._by_db: dict[tuple[str, str], list[Question]] = {}
        for split, questions_ in self._eligible.items():
            for q in questions_:
                self._by_db.setdefault((split, q.db_id), []).append(q)

    def __len__(self) -> int:
        return len(self._questions)

    def get(self, question_id: str) -> Question:
        """The question with this id, excluded ones included.

        Raises:
            KeyError: No such question.
        """
        return self._questions[question_id]

    def gold(self, question: Question) -> Gold:
        """The question's gold result, normalised on first use and kept."""
        gold = self._golds.get(question.id)
        if gold is None:
            gold = prepare_gold(question.gold_rows, question.order_matters)
            self._golds[question.id] = gold
        return gold

    def all(self, split: str) -> list[Question]:
        """Every question of a split in id order, excluded ones included."""
        return [q for q in self._questions.values() if q.split == split]

    def eligible(
        self, split: str, db_id: str | None = None, hardness: str | None = None
    ) -> list[Question]:
        """Questions that may be sampled, optionally of one database or level."""
        pool = (
            self._eligible.get(split, [])
            if db_id is None
            else self._by_db.get((split, db_id), [])
        )
        if hardness is not None:
            pool = [q for q in pool if q.hardness == hardness]
        return pool

    def db_ids(self, split: str | None = None) -> list[str]:
        """Databases that have questions, of one split or all."""
        return sorted(
            db for db, s in self._db_split.items() if split is None or s == split
        )

    def split_of(self, db_id: str) -> str | None:
        return self._db_split.get(db_id)

    def schema(self, db_id: str) -> DatabaseSchema:
        return self.schemas[db_id]

    def db_path(self, db_id: str) -> Path:
        return database_path(self.data_dir, db_id)


def database_path(data_dir: Path, db_id: str) -> Path:
    return data_dir / "databases" / db_id / f"{db_id}.sqlite"


def questions_dir(data_dir: Path) -> Path:
    return data_dir / "questions"


@functools.cache
def load_bank(data_dir: Path = DEFAULT_DATA_DIR) -> QuestionBank:
    """Read the built bank once per process.

    Raises:
        FileNotFoundError: The data has not been built (run ``make data``).
    """
    qdir = questions_dir(Path(data_dir))
    manifest = qdir / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(
            f"No question bank under {qdir}; run `make data` to build it."
        )
    questions: list[Question] = []
    for split in SPLITS:
        path = qdir / f"{split}.json"
        if path.is_file():
            records = json.loads(path.read_text(encoding="utf-8"))
            questions.extend(Question.from_record(r) for r in records)
    raw_schemas = json.loads((qdir / "schemas.json").read_text(encoding="utf-8"))
    schemas = {
        db_id: DatabaseSchema(
            db_id=db_id, tables=tuple(Table.from_record(t) for t in tables)
        )
        for db_id, tables in raw_schemas.items()
    }
    return QuestionBank(Path(data_dir), questions, schemas)
