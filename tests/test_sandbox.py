"""The sandbox refuses everything but reads, and stops runaway statements."""

import hashlib
import time
from pathlib import Path

import pytest

from sql_env.server.errors import (
    QueryError,
    QueryTimeoutError,
    ResourceLimitError,
    UnsafeQueryError,
)
from sql_env.server.question_bank import database_path
from sql_env.server.sandbox import Sandbox

DEADLINE_S = 0.5
MARGIN_S = 2.0  # generous: CI machines are shared, the point is "stopped", not speed


@pytest.fixture
def shop_db(tiny_data_dir: Path) -> Path:
    return database_path(tiny_data_dir, "spider", "shop")


@pytest.fixture
def sandbox(shop_db: Path):
    with Sandbox(shop_db, timeout_s=DEADLINE_S) as box:
        yield box


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_select_returns_columns_and_rows(sandbox: Sandbox) -> None:
    result = sandbox.execute("SELECT id, name FROM customer WHERE id <= 2 ORDER BY id")
    assert result.columns == ("id", "name")
    assert result.rows == [(1, "Ann"), (2, "Bob")]
    assert not result.more_rows


@pytest.mark.parametrize(
    ("sql", "named"),
    [
        pytest.param(
            "INSERT INTO customer VALUES (9, 'x', 'y', 1)", "INSERT", id="insert"
        ),
        pytest.param("UPDATE customer SET name = 'x'", "UPDATE", id="update"),
        pytest.param("DELETE FROM customer", "DELETE", id="delete"),
        pytest.param(
            "REPLACE INTO customer VALUES (1, 'x', 'y', 1)", "INSERT", id="replace"
        ),
        pytest.param("CREATE TABLE t (x)", "CREATE", id="create-table"),
        pytest.param("CREATE TEMP TABLE t (x)", "CREATE", id="create-temp"),
        pytest.param("CREATE INDEX i ON customer(name)", "CREATE", id="index"),
        pytest.param("CREATE VIEW v AS SELECT 1", "CREATE", id="view"),
        pytest.param(
            "CREATE TRIGGER tr AFTER INSERT ON customer BEGIN SELECT 1; END",
            "CREATE",
            id="trigger",
        ),
        pytest.param("DROP TABLE customer", "DROP", id="drop-table"),
        pytest.param("ALTER TABLE customer ADD COLUMN x", "ALTER", id="alter"),
        pytest.param("ATTACH DATABASE ':memory:' AS other", "ATTACH", id="attach"),
        pytest.param("VACUUM INTO '/tmp/sqlenv-copy.db'", "ATTACH", id="vacuum-into"),
        pytest.param("PRAGMA writable_schema = ON", "PRAGMA", id="pragma-write"),
        pytest.param("PRAGMA table_info(customer)", "PRAGMA", id="pragma-read"),
        pytest.param(
            "SELECT * FROM pragma_table_info('customer')", "not allowed", id="pragma-fn"
        ),
        pytest.param("BEGIN", "transaction", id="begin"),
        pytest.param("SAVEPOINT s", "SAVEPOINT", id="savepoint"),
        pytest.param("ANALYZE", "ANALYZE", id="analyze"),
        pytest.param("REINDEX", "REINDEX|only SELECT", id="reindex"),
        pytest.param("SELECT load_extension('libx')", "load_extension", id="load-ext"),
    ],
)
def test_refuses_anything_but_reads(
    sandbox: Sandbox, shop_db: Path, sql: str, named: str
) -> None:
    before = sha256(shop_db)
    with pytest.raises(UnsafeQueryError, match=named):
        sandbox.execute(sql)
    assert sha256(shop_db) == before
    assert sandbox.execute("SELECT count(*) FROM customer").rows == [(6,)]


def test_query_rejects_second_statement(sandbox: Sandbox) -> None:
    with pytest.raises(UnsafeQueryError, match="exactly one"):
        sandbox.execute("SELECT 1; DELETE FROM customer")


def test_trailing_semicolon_and_comment_are_one_statement(sandbox: Sandbox) -> None:
    assert sandbox.execute("SELECT 1; -- done").rows == [(1,)]


@pytest.mark.parametrize(
    "sql",
    [
        pytest.param(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
            "SELECT count(*) FROM c",
            id="endless-recursive-cte",
        ),
        pytest.param(
            "SELECT count(*) FROM customer a, customer b, customer c, customer d, "
            "customer e, customer f, customer g, customer h, customer i, customer j",
            id="cartesian-product",
        ),
    ],
)
def test_runaway_query_is_stopped_at_deadline(sandbox: Sandbox, sql: str) -> None:
    start = time.monotonic()
    with pytest.raises(QueryTimeoutError, match="longer than"):
        sandbox.execute(sql)
    assert time.monotonic() - start < DEADLINE_S + MARGIN_S
    assert sandbox.execute("SELECT 1").rows == [(1,)]


@pytest.mark.parametrize(
    "sql",
    [
        pytest.param("SELECT randomblob(1e9)", id="randomblob"),
        pytest.param("SELECT zeroblob(2000000000)", id="zeroblob"),
        pytest.param(
            "SELECT replace(hex(zeroblob(400000)), '0', '0000000000')", id="replace"
        ),
    ],
)
def test_huge_values_hit_the_length_limit(sandbox: Sandbox, sql: str) -> None:
    with pytest.raises(ResourceLimitError):
        sandbox.execute(sql)


@pytest.mark.parametrize(
    "sql",
    [
        pytest.param("SELECT length(printf('%.*c', 2147483647, 'x'))", id="star"),
        pytest.param("SELECT length(format('%2000000000c', 'x'))", id="width"),
        pytest.param("SELECT printf('%d %.*c', 1, 99999999, 'x')", id="second-spec"),
    ],
)
def test_printf_widths_that_loop_for_seconds_are_refused(
    sandbox: Sandbox, sql: str
) -> None:
    with pytest.raises(ResourceLimitError, match="printf"):
        sandbox.execute(sql)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        pytest.param("SELECT printf('%.2f', 3.14159)", "3.14", id="precision"),
        pytest.param("SELECT printf('%5d|%-3s|%%', 42, 'a')", "   42|a  |%", id="mix"),
        pytest.param("SELECT printf('%.*f', 1, 2.25)", "2.3", id="star-ok"),
        pytest.param("SELECT format('%s-%s', 'a', NULL)", "a-", id="format-null"),
    ],
)
def test_printf_still_works(sandbox: Sandbox, sql: str, expected: str) -> None:
    assert sandbox.execute(sql).rows == [(expected,)]


def test_rows_beyond_the_cap_are_reported_not_kept(shop_db: Path) -> None:
    with Sandbox(shop_db, max_rows=3) as box:
        result = box.execute("SELECT * FROM customer")
    assert len(result.rows) == 3
    assert result.more_rows


def test_result_bytes_are_capped(shop_db: Path) -> None:
    with (
        Sandbox(shop_db, max_result_bytes=1_000) as box,
        pytest.raises(ResourceLimitError, match="larger than"),
    ):
        box.execute("SELECT hex(zeroblob(300)) FROM customer")


@pytest.mark.parametrize(
    ("sql", "match"),
    [
        pytest.param("", "empty", id="empty"),
        pytest.param("   \n ", "empty", id="blank"),
        pytest.param("SELECT 1\x00; DROP TABLE customer", "NUL", id="nul-byte"),
        pytest.param("SELEC name FROM customer", "syntax error", id="syntax"),
        pytest.param("SELECT nope FROM customer", "no such column", id="column"),
        pytest.param("-- only a comment", "no rows|empty", id="comment-only"),
    ],
)
def test_bad_sql_is_a_readable_error(sandbox: Sandbox, sql: str, match: str) -> None:
    with pytest.raises((QueryError, UnsafeQueryError), match=match):
        sandbox.execute(sql)


def test_unicode_round_trips(sandbox: Sandbox) -> None:
    assert sandbox.execute("SELECT 'café ☕ 名前'").rows == [("café ☕ 名前",)]


def test_close_is_idempotent(shop_db: Path) -> None:
    box = Sandbox(shop_db)
    box.execute("SELECT 1")
    box.close()
    box.close()


def test_lone_surrogate_is_refused(sandbox: Sandbox) -> None:
    with pytest.raises(QueryError, match="Unicode"):
        sandbox.execute("SELECT '\ud800'")


def test_printf_helper_has_the_same_length_limit(sandbox: Sandbox) -> None:
    with pytest.raises(ResourceLimitError):
        sandbox.execute(
            "SELECT printf(replace(hex(zeroblob(40000)), '00', '%900c'), 'x')"
        )


@pytest.mark.parametrize(
    ("sql", "reads"),
    [
        pytest.param("SELECT name FROM customer", True, id="column"),
        pytest.param("SELECT count(*) FROM customer", True, id="count-star"),
        pytest.param("SELECT 'Joe' FROM customer LIMIT 1", True, id="literal-from"),
        pytest.param("SELECT 6", False, id="literal"),
        pytest.param("SELECT * FROM (SELECT 1 AS x)", False, id="subquery-literal"),
        pytest.param(
            "WITH r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r WHERE x < 3) "
            "SELECT x FROM r",
            False,
            id="recursive-cte",
        ),
        pytest.param("SELECT name FROM sqlite_master", False, id="schema-only"),
    ],
)
def test_the_sandbox_says_whether_a_statement_read_a_table(
    sandbox: Sandbox, sql: str, reads: bool
) -> None:
    assert sandbox.execute(sql).reads_table is reads
    # sqlite3 reuses the prepared statement: the answer must not change.
    assert sandbox.execute(sql).reads_table is reads


@pytest.mark.parametrize(
    ("argument", "width"),
    [
        pytest.param("'2147483647x'", 2147483647, id="text-with-trailing-junk"),
        pytest.param("'  -3000'", -3000, id="text-negative-with-spaces"),
        pytest.param("x'39393939'", 9999, id="blob-digits"),
        pytest.param("2.9e9", 2900000000, id="real"),
    ],
)
def test_printf_widths_are_read_the_way_sqlite_reads_them(
    sandbox: Sandbox, argument: str, width: int
) -> None:
    with pytest.raises(ResourceLimitError, match="printf"):
        sandbox.execute(f"SELECT printf('%.*c', {argument}, 'x') IS NULL")
    assert abs(width) > 1_000


def test_each_statement_can_have_its_own_deadline(shop_db: Path) -> None:
    runaway = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
        "SELECT count(*) FROM c"
    )
    with Sandbox(shop_db, timeout_s=60) as box:
        started = time.monotonic()
        with pytest.raises(QueryTimeoutError, match="longer than 0.2 s"):
            box.execute(runaway, timeout_s=0.2)
        assert time.monotonic() - started < 0.2 + MARGIN_S
        assert box.execute("SELECT count(*) FROM customer").rows == [(6,)]
