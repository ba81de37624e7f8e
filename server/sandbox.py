"""Read-only SQL execution: the only code in SQLEnv that opens a SQLite database.

The safety gate is SQLite itself, not a parser of ours: the file is opened
read-only and immutable, ``PRAGMA query_only`` is on, and an authorizer refuses
every action but reading tables and calling ordinary functions. SQLite is the
one parser that cannot disagree with SQLite, so nothing it would run as a write
can slip past. Runaway statements are bounded three ways: SQLite's own length
limits (no gigabyte strings), a progress-handler deadline (most statements),
and a watchdog thread that calls ``interrupt()`` for the few single VM steps
that run long without reaching the progress handler.
"""

import heapq
import itertools
import re
import sqlite3
import threading
import time
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
# SQLITE_LIMIT_LENGTH. Spider's longest value is 213 chars; at 1 MB, instr() or
# replace() on two huge strings ran one uninterruptible 3 s VM step.
MAX_VALUE_BYTES = 100_000
MAX_SQL_LENGTH = 100_000
PROGRESS_EVERY_N_OPS = 10_000  # ~0.1-1 ms of VM work between deadline checks
FETCH_CHUNK = 256
POOL_PER_DB = 4  # idle connections kept per database file
# printf('%.*c', 2e9, 'x') loops ~6 s inside one call that neither the progress
# handler nor interrupt() can stop, so widths are capped before SQLite sees them.
MAX_PRINTF_WIDTH = 1_000
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
    """Rows of one statement; ``more_rows`` says rows were left unfetched."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    more_rows: bool = False


class _Watchdog:
    """One process-wide thread that interrupts statements past their deadline.

    Arming costs a lock and a heap push, so it is cheap enough for every query.
    The interrupt happens under the same lock that disarming takes, so a
    finished statement can never be hit by an interrupt meant for it.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._armed: dict[int, sqlite3.Connection] = {}
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, deadline: float, conn: sqlite3.Connection) -> int:
        token = next(self._ids)
        with self._cond:
            self._armed[token] = conn
            heapq.heappush(self._heap, (deadline, token))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="sql-env-watchdog", daemon=True
                )
                self._thread.start()
            elif self._heap[0][1] == token:
                self._cond.notify()
        return token

    def disarm(self, token: int) -> None:
        with self._cond:
            self._armed.pop(token, None)

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][1] not in self._armed:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, token = self._heap[0]
                delay = deadline - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)
                conn = self._armed.pop(token, None)
                if conn is not None:
                    conn.interrupt()


_WATCHDOG = _Watchdog()


class _ConnectionPool:
    """Opened, configured connections per database file, reused across episodes.

    Opening one costs ~100 us (schema parse included), a checkout ~2 us, and a
    random question usually changes database. The files are immutable and
    read-only, so a connection carries nothing from one episode to the next;
    the authorizer, progress handler and printf guard are set again at checkout.
    """

    def __init__(self, per_db: int = POOL_PER_DB) -> None:
        self._lock = threading.Lock()
        self._idle: dict[Path, list[sqlite3.Connection]] = {}
        self._per_db = per_db

    def get(self, path: Path) -> sqlite3.Connection | None:
        with self._lock:
            idle = self._idle.get(path)
            return idle.pop() if idle else None

    def put(self, path: Path, conn: sqlite3.Connection) -> None:
        conn.set_authorizer(None)
        conn.set_progress_handler(None, 0)
        with self._lock:
            idle = self._idle.setdefault(path, [])
            if len(idle) < self._per_db:
                idle.append(conn)
                return
        conn.close()


_POOL = _ConnectionPool()


class Sandbox:
    """A read-only, time-limited SQLite connection to one database file.

    One per session: a session runs its steps in one thread at a time, so the
    connection is opened lazily and shared by nothing else.

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
        self._deadline = 0.0
        self._denied: str | None = None
        self._keyword = ""
        self._function_error: str | None = None
        self._printf_conn: sqlite3.Connection | None = None
        # close() may come from another thread while a query runs (a session
        # torn down mid-QUERY): it then interrupts, and the query's own thread
        # closes the connection instead of returning a busy one to the pool.
        self._state_lock = threading.Lock()
        self._running = False
        self._closing = False

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection (to the pool); safe to call twice, any thread."""
        with self._state_lock:
            if self._running:
                self._closing = True
                if self._conn is not None:
                    self._conn.interrupt()
                return
        self._release()

    def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            if self._closing:
                conn.close()  # interrupted mid-query: never pooled
            else:
                _POOL.put(self.db_path, conn)
        if self._printf_conn is not None:
            self._printf_conn.close()
            self._printf_conn = None
        self._closing = False

    def execute(self, sql: str) -> QueryResult:
        """Run one read-only statement and fetch its rows within the deadline.

        Raises:
            UnsafeQueryError: The statement is not a single read-only statement.
            QueryTimeoutError: It ran past ``timeout_s``.
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
        self._keyword = sql.split(None, 1)[0].upper()[:20] if sql.split() else ""
        self._deadline = time.monotonic() + self.timeout_s
        with self._state_lock:
            self._running = True
        token = _WATCHDOG.arm(self._deadline, conn)
        cursor = conn.cursor()
        try:
            cursor.execute(sql)
            if cursor.description is None:
                raise UnsafeQueryError(
                    "The statement returned no rows: only SELECT statements may run."
                )
            columns = tuple(d[0] for d in cursor.description)
            rows, more = self._fetch(cursor)
        except sqlite3.Error as exc:
            raise self._translate(exc) from None
        finally:
            cursor.close()
            _WATCHDOG.disarm(token)
            with self._state_lock:
                self._running = False
                closing = self._closing
            if closing:
                self._release()
        return QueryResult(columns=columns, rows=rows, more_rows=more)

    def _fetch(self, cursor: sqlite3.Cursor) -> tuple[list[tuple[Any, ...]], bool]:
        rows: list[tuple[Any, ...]] = []
        size = 0
        while len(rows) < self.max_rows:
            chunk = cursor.fetchmany(min(FETCH_CHUNK, self.max_rows - len(rows)))
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
            conn = _POOL.get(self.db_path) or self._open()
            for name in ("printf", "format"):
                conn.create_function(name, -1, self._guarded_printf)
            conn.set_authorizer(self._authorize)
            conn.set_progress_handler(self._check_deadline, PROGRESS_EVERY_N_OPS)
            self._conn = conn
        return self._conn

    def _open(self) -> sqlite3.Connection:
        if not self.db_path.is_file():
            raise FileNotFoundError(self.db_path)
        uri = f"{self.db_path.resolve().as_uri()}?mode=ro&immutable=1"
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        conn.execute("PRAGMA query_only = ON")
        for limit, value in _LIMITS.items():
            conn.setlimit(limit, value)
        return conn

    def _authorize(
        self,
        action: int,
        arg1: str | None,
        arg2: str | None,
        db_name: str | None,
        trigger: str | None,
    ) -> int:
        if action in _ALLOWED_ACTIONS:
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
                    if _as_int(size) > MAX_PRINTF_WIDTH:
                        self._function_error = (
                            f"printf() width or precision over {MAX_PRINTF_WIDTH:,}"
                        )
                        raise ValueError(self._function_error)
                if spec["conv"] != "%":
                    next(arg_iter, None)
        if self._printf_conn is None:
            self._printf_conn = sqlite3.connect(":memory:", check_same_thread=False)
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
                    f"The query ran longer than {self.timeout_s:g} s and was "
                    "stopped; simplify it or add a LIMIT."
                )
            return QueryError("The query was interrupted.")
        if "too big" in message or "too large" in message or "too long" in message:
            return ResourceLimitError(f"Resource limit: {message}.")
        return QueryError(f"SQL error: {message}")


def _as_int(value: Any) -> int:
    try:
        return abs(int(float(value or 0)))
    except (TypeError, ValueError, OverflowError):
        return 0


def is_utf8(text: str) -> bool:
    """False for lone surrogates (JSON "\\ud800"), which SQLite cannot take."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
