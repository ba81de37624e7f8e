"""Read-only SQL execution: the only code in SQLEnv that runs SQL on a database.

The safety gate is SQLite itself, not a parser of ours: the file is opened
read-only and immutable, ``PRAGMA query_only`` is on, and an authorizer refuses
every action but reading tables and calling ordinary functions. SQLite is the
one parser that cannot disagree with SQLite, so nothing it would run as a write
can slip past. Runaway statements are bounded by SQLite's own length limits (no
gigabyte strings), a progress-handler deadline, and a guard on ``printf``
widths. Some statements still run long inside one VM step that no handler or
``interrupt()`` reaches (hundreds of function calls in one row); for those the
sandbox runs in a SQL worker process (``sql_worker``) that the server kills at
the deadline.
"""

import re
import sqlite3
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sql_env.server.errors import (
    QueryError,
    QueryTimeoutError,
    ResourceLimitError,
    UnsafeQueryError,
)

QUERY_TIMEOUT_S = 5.0
MAX_RESULT_ROWS = 10_000  # rows kept from one statement; more are reported, not kept
MAX_RESULT_BYTES = 8_000_000  # text and blob bytes kept from one statement
# SQLITE_LIMIT_LENGTH: far above any value in the datasets, far below the size at
# which one instr() or replace() on two huge strings is a VM step of seconds that
# no deadline check can interrupt.
MAX_VALUE_BYTES = 100_000
MAX_SQL_LENGTH = 100_000
PROGRESS_EVERY_N_OPS = 10_000  # VM steps between deadline checks
FETCH_CHUNK = 256
# printf('%.*c', 2e9, 'x') loops for seconds inside one call that neither the
# progress handler nor interrupt() can stop, so widths are capped before SQLite
# sees them: a clear error instead of a killed worker.
MAX_PRINTF_WIDTH = 1_000
# sqlite3 reuses prepared statements (and SQLite's authorizer, which tells which
# tables a statement reads, runs only when one is prepared): remember the answer
# per statement, for more statements than the connection's cache holds.
STATEMENT_CACHE = 128
READS_MEMO = 4 * STATEMENT_CACHE
# How SQLite reads a text width argument: its leading integer ('12x' is 12).
_LEADING_INT = re.compile(r"\s*([+-]?\d+)")
_PRINTF_SPEC = re.compile(
    r"%[-+ #0,!]*(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d+))?[hlLqjzt]*(?P<conv>.)",
    re.DOTALL,
)

_LIMITS = {
    sqlite3.SQLITE_LIMIT_LENGTH: MAX_VALUE_BYTES,
    sqlite3.SQLITE_LIMIT_SQL_LENGTH: MAX_SQL_LENGTH,
    sqlite3.SQLITE_LIMIT_ATTACHED: 0,
    sqlite3.SQLITE_LIMIT_EXPR_DEPTH: 200,
    sqlite3.SQLITE_LIMIT_COMPOUND_SELECT: 100,
    sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH: 1_000,
    sqlite3.SQLITE_LIMIT_FUNCTION_ARG: 100,
    sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER: 100,
}

_ALLOWED_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE}
)
# Functions that touch files or the engine's internals, should a build have them.
_DENIED_FUNCTIONS = frozenset(
    {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}
)
_ACTION_NAMES = {
    sqlite3.SQLITE_INSERT: "INSERT",
    sqlite3.SQLITE_UPDATE: "UPDATE",
    sqlite3.SQLITE_DELETE: "DELETE",
    sqlite3.SQLITE_ATTACH: "ATTACH (and VACUUM INTO)",
    sqlite3.SQLITE_DETACH: "DETACH",
    sqlite3.SQLITE_PRAGMA: "PRAGMA",
    sqlite3.SQLITE_TRANSACTION: "transaction control",
    sqlite3.SQLITE_SAVEPOINT: "SAVEPOINT",
    sqlite3.SQLITE_ANALYZE: "ANALYZE",
    sqlite3.SQLITE_REINDEX: "REINDEX",
    sqlite3.SQLITE_ALTER_TABLE: "ALTER TABLE",
    sqlite3.SQLITE_CREATE_TABLE: "CREATE TABLE",
    sqlite3.SQLITE_CREATE_TEMP_TABLE: "CREATE TABLE",
    sqlite3.SQLITE_CREATE_INDEX: "CREATE INDEX",
    sqlite3.SQLITE_CREATE_TEMP_INDEX: "CREATE INDEX",
    sqlite3.SQLITE_CREATE_VIEW: "CREATE VIEW",
    sqlite3.SQLITE_CREATE_TEMP_VIEW: "CREATE VIEW",
    sqlite3.SQLITE_CREATE_TRIGGER: "CREATE TRIGGER",
    sqlite3.SQLITE_CREATE_TEMP_TRIGGER: "CREATE TRIGGER",
    sqlite3.SQLITE_CREATE_VTABLE: "CREATE VIRTUAL TABLE",
    sqlite3.SQLITE_DROP_TABLE: "DROP TABLE",
    sqlite3.SQLITE_DROP_TEMP_TABLE: "DROP TABLE",
    sqlite3.SQLITE_DROP_INDEX: "DROP INDEX",
    sqlite3.SQLITE_DROP_TEMP_INDEX: "DROP INDEX",
    sqlite3.SQLITE_DROP_VIEW: "DROP VIEW",
    sqlite3.SQLITE_DROP_TEMP_VIEW: "DROP VIEW",
    sqlite3.SQLITE_DROP_TRIGGER: "DROP TRIGGER",
    sqlite3.SQLITE_DROP_TEMP_TRIGGER: "DROP TRIGGER",
    sqlite3.SQLITE_DROP_VTABLE: "DROP VIRTUAL TABLE",
}


_WRITES = frozenset(
    {sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE}
)


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Rows of one statement.

    ``more_rows`` says rows were left unfetched; ``reads_table`` says the
    statement read a table of the database (not only literals or the schema).
    """

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    more_rows: bool = False
    reads_table: bool = False


class Sandbox:
    """A read-only, time-limited SQLite connection to one database file.

    Used by one thread at a time (a SQL worker, or the data build); the
    connection is opened on first use and kept until ``close``.

    Args:
        db_path: The ``.sqlite`` file.
        timeout_s: Deadline of one statement, execution and fetch together.
        max_rows: Rows kept from one statement.
        max_result_bytes: Text and blob bytes kept from one statement.
    """

    def __init__(
        self,
        db_path: Path,
        *,
        timeout_s: float = QUERY_TIMEOUT_S,
        max_rows: int = MAX_RESULT_ROWS,
        max_result_bytes: int = MAX_RESULT_BYTES,
    ) -> None:
        self.db_path = Path(db_path)
        self.timeout_s = timeout_s
        self.max_rows = max_rows
        self.max_result_bytes = max_result_bytes
        self._conn: sqlite3.Connection | None = None
        self._printf_conn: sqlite3.Connection | None = None
        self._deadline = 0.0
        self._limit_s = timeout_s
        self._denied: str | None = None
        self._keyword = ""
        self._function_error: str | None = None
        self._reads_table = False
        self._prepared = False
        self._reads_memo: OrderedDict[str, bool] = OrderedDict()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections; safe to call twice."""
        for conn in (self._conn, self._printf_conn):
            if conn is not None:
                conn.close()
        self._conn = self._printf_conn = None

    def execute(
        self, sql: str, timeout_s: float | None = None, max_rows: int | None = None
    ) -> QueryResult:
        """Run one read-only statement and fetch its rows within the deadline.

        Args:
            sql: The statement.
            timeout_s: This statement's deadline (default: the sandbox's).
            max_rows: Rows kept from it (default: the sandbox's).

        Raises:
            UnsafeQueryError: The statement is not a single read-only statement.
            QueryTimeoutError: It ran past the deadline.
            ResourceLimitError: It built a value or result over the limits.
            QueryError: SQLite rejected it for any other reason.
        """
        if not sql.strip():
            raise QueryError("The query is empty; send one SELECT statement.")
        if "\x00" in sql:
            raise QueryError("The query contains a NUL character.")
        if not is_utf8(sql):
            raise QueryError("The query is not valid Unicode text.")
        conn = self._connection()
        self._denied = self._function_error = None
        self._reads_table = self._prepared = False
        self._keyword = sql.split(None, 1)[0].upper()[:20] if sql.split() else ""
        self._limit_s = self.timeout_s if timeout_s is None else timeout_s
        self._deadline = time.monotonic() + self._limit_s
        cursor = conn.cursor()
        try:
            cursor.execute(sql)
            if cursor.description is None:
                raise UnsafeQueryError(
                    "The statement returned no rows: only SELECT statements may run."
                )
            columns = tuple(d[0] for d in cursor.description)
            rows, more = self._fetch(cursor, max_rows or self.max_rows)
        except sqlite3.Error as exc:
            raise self._translate(exc) from None
        except MemoryError:
            raise ResourceLimitError(
                "The query needed more memory than the sandbox allows; select "
                "fewer rows or columns."
            ) from None
        finally:
            cursor.close()
        return QueryResult(columns, rows, more, self._remember_reads(sql))

    def _remember_reads(self, sql: str) -> bool:
        """Whether ``sql`` read a table, also when sqlite3 reused its statement."""
        if self._prepared:
            self._reads_memo[sql] = self._reads_table
            if len(self._reads_memo) > READS_MEMO:
                self._reads_memo.popitem(last=False)
            return self._reads_table
        self._reads_memo.move_to_end(sql)
        return self._reads_memo[sql]

    def _fetch(
        self, cursor: sqlite3.Cursor, max_rows: int
    ) -> tuple[list[tuple[Any, ...]], bool]:
        rows: list[tuple[Any, ...]] = []
        size = 0
        while len(rows) < max_rows:
            chunk = cursor.fetchmany(min(FETCH_CHUNK, max_rows - len(rows)))
            if not chunk:
                return rows, False
            for row in chunk:
                for value in row:
                    if isinstance(value, str | bytes):
                        size += len(value)
            if size > self.max_result_bytes:
                raise ResourceLimitError(
                    f"The result is larger than {self.max_result_bytes:,} bytes; "
                    "select fewer columns or add a LIMIT."
                )
            rows.extend(chunk)
        return rows, cursor.fetchone() is not None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = _open_read_only(self.db_path)
            for name in ("printf", "format"):
                conn.create_function(name, -1, self._guarded_printf)
            conn.set_authorizer(self._authorize)
            conn.set_progress_handler(self._check_deadline, PROGRESS_EVERY_N_OPS)
            self._conn = conn
        return self._conn

    def _authorize(
        self,
        action: int,
        arg1: str | None,
        arg2: str | None,
        db_name: str | None,
        trigger: str | None,
    ) -> int:
        self._prepared = True
        if action in _ALLOWED_ACTIONS:
            if action == sqlite3.SQLITE_READ and not (arg1 or "").startswith("sqlite_"):
                self._reads_table = True
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() not in (
            _DENIED_FUNCTIONS
        ):
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION:
            name = f"function {arg2}()"
        else:
            name = _ACTION_NAMES.get(action, f"SQLite action {action}")
        # DDL first edits sqlite_master; name the DDL, not that internal write.
        internal = (arg1 or "").startswith("sqlite_") and action in _WRITES
        if self._denied is None and not internal:
            self._denied = name
        return sqlite3.SQLITE_DENY

    def _guarded_printf(self, fmt: Any, *args: Any) -> Any:
        """SQLite's printf, refusing the widths that make it run for seconds."""
        if isinstance(fmt, str):
            arg_iter = iter(args)
            for spec in _PRINTF_SPEC.finditer(fmt):
                for part in (spec["width"], spec["precision"]):
                    size = next(arg_iter, 0) if part == "*" else part
                    if abs(sqlite_int(size)) > MAX_PRINTF_WIDTH:
                        self._function_error = (
                            f"printf() width or precision over {MAX_PRINTF_WIDTH:,}"
                        )
                        raise ValueError(self._function_error)
                if spec["conv"] != "%":
                    next(arg_iter, None)
        if self._printf_conn is None:
            self._printf_conn = sqlite3.connect(":memory:")
            for limit, value in _LIMITS.items():
                self._printf_conn.setlimit(limit, value)
        placeholders = ", ".join("?" * (len(args) + 1))
        row = self._printf_conn.execute(f"SELECT printf({placeholders})", (fmt, *args))
        return row.fetchone()[0]

    def _check_deadline(self) -> int:
        return 1 if time.monotonic() > self._deadline else 0

    def _translate(self, exc: sqlite3.Error) -> Exception:
        message = str(exc)
        if self._function_error is not None:
            return ResourceLimitError(f"Resource limit: {self._function_error}.")
        if self._denied is not None or "not authorized" in message:
            what = self._denied or f"{self._keyword or 'this'} statement"
            return UnsafeQueryError(
                f"Read-only sandbox: {what} is not allowed. "
                "Only SELECT statements that read tables may run."
            )
        if isinstance(exc, sqlite3.ProgrammingError) and "one statement" in message:
            return UnsafeQueryError("Send exactly one SQL statement per QUERY.")
        if "interrupted" in message:
            if time.monotonic() >= self._deadline:
                return QueryTimeoutError(
                    f"The query ran longer than {self._limit_s:g} s and was "
                    "stopped; simplify it or add a LIMIT."
                )
            return QueryError("The query was interrupted.")
        if "too big" in message or "too large" in message or "too long" in message:
            return ResourceLimitError(f"Resource limit: {message}.")
        if "out of memory" in message:
            return ResourceLimitError(
                "The query needed more memory than the sandbox allows; select "
                "fewer rows or columns."
            )
        return QueryError(f"SQL error: {message}")


def sqlite_int(value: Any) -> int:
    """An argument read as an integer the way SQLite's printf reads its widths.

    Text and blobs count by their leading integer, reals are truncated.

    >>> sqlite_int("2147483647x"), sqlite_int(" -7"), sqlite_int("1e9"), sqlite_int(2.9)
    (2147483647, -7, 1, 2)
    >>> sqlite_int(b"12"), sqlite_int("x"), sqlite_int(None), sqlite_int(1e300) > 0
    (12, 0, 0, True)
    """
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, float):
        if value != value:  # NaN
            return 0
        return int(max(min(value, 2.0**63 - 1), -(2.0**63)))
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        match = _LEADING_INT.match(value)
        return int(match.group(1)) if match else 0
    return 0


def _open_read_only(db_path: Path) -> sqlite3.Connection:
    if not db_path.is_file():
        raise FileNotFoundError(db_path)
    uri = f"{db_path.resolve().as_uri()}?mode=ro&immutable=1"
    conn = sqlite3.connect(uri, uri=True, cached_statements=STATEMENT_CACHE)
    conn.execute("PRAGMA query_only = ON")
    for limit, value in _LIMITS.items():
        conn.setlimit(limit, value)
    return conn


def jsonable(value: Any) -> Any:
    """A value as the bank stores gold results: blobs become text.

    >>> jsonable(b"ab"), jsonable(1.5)
    ('ab', 1.5)
    """
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def is_utf8(text: str) -> bool:
    """False for lone surrogates (JSON "\\ud800"), which SQLite cannot take."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
