"""Adversarial SQL through the real server: every attack is an error observation.

One uvicorn server (subprocess, free loopback port) on the real built data, a
short query deadline, and raw WebSocket frames. Each case resets an episode on
``concert_singer`` and sends one hostile action: it must come back as an
observation whose ``error`` is set, within the deadline plus a margin, with the
episode still going. Afterwards the server and the session still work, and the
sha256 of every database file is what it was before.
"""

import time
from pathlib import Path

import pytest

from sql_env.benchmarks.server_process import ServerProcess, WireClient, sha256_tree
from sql_env.benchmarks.server_process import sqlenv_server as make_server

pytestmark = pytest.mark.slow

QUERY_TIMEOUT_S = 1.0
# Slack for a loaded 2-core machine: scheduling, the watchdog's wake-up and the
# few single VM steps SQLite cannot interrupt (bounded by the length limit).
MARGIN_S = 3.0
DEADLINE_S = QUERY_TIMEOUT_S + MARGIN_S
DB_ID = "concert_singer"  # dev database: stadium, singer, concert, singer_in_concert

GIGA = 1_000_000_000
A_900K = "replace(hex(zeroblob(450000)), '0', 'a')"
A_440K = "replace(hex(zeroblob(220000)), '0', 'a')"


def q(case_id: str, sql: str) -> pytest.param:
    return pytest.param("QUERY", sql, id=f"query-{case_id}")


def t(action: str, case_id: str, name: str) -> pytest.param:
    return pytest.param(action, name, id=f"{action.lower()}-{case_id}")


WRITES_AND_DDL = [
    q("insert", "INSERT INTO singer (Singer_ID, Name) VALUES (99, 'x')"),
    q("insert-select", "INSERT INTO singer SELECT * FROM singer"),
    q("insert-or-ignore", "INSERT OR IGNORE INTO singer (Singer_ID) VALUES (1)"),
    q("upsert", "INSERT INTO singer (Singer_ID) VALUES (1) ON CONFLICT DO NOTHING"),
    q("replace", "REPLACE INTO singer (Singer_ID, Name) VALUES (1, 'x')"),
    q("update", "UPDATE singer SET Name = 'pwned'"),
    q("update-from", "UPDATE singer SET Age = c.Year FROM concert c"),
    q("delete", "DELETE FROM singer"),
    q("cte-delete", "WITH x AS (SELECT 1) DELETE FROM singer"),
    q("delete-returning", "DELETE FROM singer RETURNING *"),
    q("create-table", "CREATE TABLE pwn (x)"),
    q("create-table-as", "CREATE TABLE pwn AS SELECT * FROM singer"),
    q("create-temp-table", "CREATE TEMP TABLE pwn (x)"),
    q("create-view", "CREATE VIEW v AS SELECT 1"),
    q("create-temp-view", "CREATE TEMP VIEW v AS SELECT 1"),
    q("create-index", "CREATE INDEX i ON singer(Name)"),
    q(
        "create-trigger",
        "CREATE TRIGGER t AFTER INSERT ON singer BEGIN DELETE FROM singer; END",
    ),
    q(
        "create-temp-trigger",
        "CREATE TEMP TRIGGER t BEFORE DELETE ON singer BEGIN SELECT 1; END",
    ),
    q("create-virtual-fts5", "CREATE VIRTUAL TABLE f USING fts5(x)"),
    q("create-virtual-temp", "CREATE VIRTUAL TABLE temp.f USING fts4(x)"),
    q("drop-table", "DROP TABLE singer"),
    q("drop-table-if-exists", "DROP TABLE IF EXISTS nothing_here"),
    q("drop-view", "DROP VIEW IF EXISTS v"),
    q("drop-index", "DROP INDEX IF EXISTS sqlite_autoindex_singer_1"),
    q("drop-trigger", "DROP TRIGGER IF EXISTS t"),
    q("alter-rename", "ALTER TABLE singer RENAME TO s2"),
    q("alter-add-column", "ALTER TABLE singer ADD COLUMN pwn TEXT"),
    q("alter-drop-column", "ALTER TABLE singer DROP COLUMN Name"),
    q("alter-rename-column", "ALTER TABLE singer RENAME COLUMN Name TO n"),
    q("vacuum", "VACUUM"),
    q("vacuum-into", "VACUUM INTO '{tmp}/stolen.sqlite'"),
    q("reindex", "REINDEX"),
    q("analyze", "ANALYZE"),
    q("begin", "BEGIN"),
    q("begin-immediate", "BEGIN IMMEDIATE"),
    q("commit", "COMMIT"),
    q("rollback", "ROLLBACK"),
    q("savepoint", "SAVEPOINT s1"),
    q("release", "RELEASE s1"),
]

ATTACH_PRAGMA_EXTENSIONS = [
    q("attach-memory", "ATTACH DATABASE ':memory:' AS m"),
    q("attach-new-file", "ATTACH DATABASE '{tmp}/evil.sqlite' AS e"),
    q("attach-passwd", "ATTACH '/etc/passwd' AS p"),
    q("attach-uri", "ATTACH 'file:/etc/hostname?mode=ro' AS h"),
    q("attach-other-db", "ATTACH '{databases}/world_1/world_1.sqlite' AS w"),
    q("detach-main", "DETACH DATABASE main"),
    q("pragma-writable-schema", "PRAGMA writable_schema = ON"),
    q("pragma-writable-schema-reset", "PRAGMA writable_schema = RESET"),
    q("pragma-journal-wal", "PRAGMA journal_mode = WAL"),
    q("pragma-query-only-off", "PRAGMA query_only = OFF"),
    q("pragma-user-version", "PRAGMA user_version = 7"),
    q("pragma-cache-size", "PRAGMA cache_size = -2000000"),
    q("pragma-mmap-size", "PRAGMA mmap_size = 268435456"),
    q("pragma-locking-exclusive", "PRAGMA locking_mode = EXCLUSIVE"),
    q("pragma-temp-store-directory", "PRAGMA temp_store_directory = '{tmp}'"),
    q("pragma-integrity-check", "PRAGMA integrity_check"),
    q("pragma-function-form", "SELECT * FROM pragma_table_info('singer')"),
    q("load-extension", "SELECT load_extension('/lib/x86_64-linux-gnu/libc.so.6')"),
    q("load-extension-entry", "SELECT load_extension('mod', 'sqlite3_extension_init')"),
    q("readfile", "SELECT readfile('/etc/passwd')"),
    q("writefile", "SELECT writefile('{tmp}/x', 'y')"),
    q("fts3-tokenizer", "SELECT fts3_tokenizer('simple')"),
]

MULTIPLE_STATEMENTS = [
    q("two-selects", "SELECT 1; SELECT 2"),
    q("select-then-drop", "SELECT 1; DROP TABLE singer"),
    q("select-then-attach", "SELECT Name FROM singer; ATTACH ':memory:' AS m"),
    q("hidden-by-comments", "SELECT 1 /* x */; DELETE FROM singer -- y"),
    q("rtl-override-second", "SELECT 1 \u202e; DROP TABLE singer"),
]

RUNAWAY = [
    q(
        "recursive-cte-count",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
        "SELECT count(*) FROM c",
    ),
    q(
        "recursive-cte-max",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x FROM c) "
        "SELECT max(x) FROM c",
    ),
    q(
        "recursive-cte-order-by",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
        "SELECT x FROM c ORDER BY x DESC LIMIT 1",
    ),
    q("cartesian-12", "SELECT count(*) FROM " + ", ".join(["singer"] * 12)),
    q(
        "cartesian-group-by",
        "SELECT a.Name, count(*) FROM singer a, "
        + ", ".join(["concert"] * 10)
        + " GROUP BY a.Name",
    ),
    q(
        "group-concat-growth",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
        "WHERE x < 10000000) SELECT group_concat(hex(randomblob(64))) FROM c",
    ),
    q(
        "many-big-rows",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
        "WHERE x < 100000) SELECT hex(randomblob(10000)) FROM c",
    ),
]

HUGE_VALUES = [
    q("randomblob-1e9", f"SELECT randomblob({GIGA})"),
    q("randomblob-length", f"SELECT length(randomblob({GIGA}))"),
    q("zeroblob-1e9", f"SELECT zeroblob({GIGA})"),
    q("zeroblob-hex", "SELECT hex(zeroblob(600000))"),
    q(
        "replace-amplification",
        "SELECT replace(replace(replace(hex(zeroblob(1000)), '0', '0000000000'), "
        "'0', '0000000000'), '0', '0000000000')",
    ),
    q("printf-precision", "SELECT printf('%.*c', 2147483647, 'x')"),
    q("format-precision", "SELECT format('%.*c', 2147483647, 'x')"),
    q("quote-zeroblob", "SELECT substr(quote(zeroblob(1000000)), 1)"),
    q("instr-quadratic", f"SELECT instr({A_900K}, {A_440K} || 'b') FROM singer"),
    q("replace-quadratic", f"SELECT replace({A_900K}, {A_440K} || 'b', 'c')"),
]

DEEP_AND_LONG = [
    q("deep-parentheses", "SELECT " + "(" * 5000 + "1" + ")" * 5000),
    q(
        "deep-subqueries",
        "SELECT * FROM " + "(SELECT * FROM " * 300 + "singer" + ")" * 300,
    ),
    q("deep-case", "SELECT " + "CASE WHEN 1 THEN " * 1000 + "1" + " END" * 1000),
    q("deep-concat", "SELECT " + " || ".join(["'a'"] * 5000)),
    q("long-in-list", "SELECT 1 WHERE 1 IN (" + ",".join(["1"] * 60000) + ")"),
    q("compound-10k", " UNION ALL ".join(["SELECT 1"] * 10000)),
    q("long-literal-1mb", "SELECT '" + "a" * 1_000_000 + "'"),
    q("too-many-arguments", "SELECT max(" + ",".join(["1"] * 1000) + ")"),
    q("like-pattern-bomb", "SELECT 1 WHERE 'a' LIKE '" + "%a" * 5000 + "'"),
]

ODD_TEXT = [
    q("nul-byte-second-statement", "SELECT 1\x00; DROP TABLE singer"),
    q("nul-in-literal", "SELECT 'a\x00b'"),
    q("lone-surrogate", "SELECT '\ud800'"),
    q("zero-width-keyword", "SEL\u200bECT 1"),
    q("fullwidth-keyword", "ＳＥＬＥＣＴ 1"),
    q("bom-then-drop", "\ufeffDROP TABLE singer"),
    q("empty", ""),
    q("whitespace-only", " \n\t "),
    q("comment-only", "-- just a comment"),
]

TABLE_NAME_TRICKS = [
    t(action, case_id, name)
    for action in ("DESCRIBE", "SAMPLE")
    for case_id, name in [
        ("sql-injection", "singer; DROP TABLE singer"),
        ("quote-breakout", 'singer" ; DROP TABLE singer; --'),
        ("or-true", "singer' OR '1'='1"),
        ("subquery", "(SELECT * FROM singer)"),
        ("table-function", "pragma_table_info('singer')"),
        ("schema-table", "sqlite_master"),
        ("schema-prefixed", "main.singer"),
        ("path-traversal", "../../../../etc/passwd"),
        ("absolute-path", "/etc/passwd"),
        ("db-file", "../concert_singer/concert_singer.sqlite"),
        ("nul-suffix", "singer\x00"),
        ("lone-surrogate", "singer\udc80"),
        ("very-long", "s" * 200_000),
        ("empty", ""),
    ]
]

CASES = (
    WRITES_AND_DDL
    + ATTACH_PRAGMA_EXTENSIONS
    + MULTIPLE_STATEMENTS
    + RUNAWAY
    + HUGE_VALUES
    + DEEP_AND_LONG
    + ODD_TEXT
    + TABLE_NAME_TRICKS
)


class Target:
    """The server under attack, its client, and what must not change."""

    def __init__(self, server: ServerProcess, data_dir: Path, tmp: Path) -> None:
        self.server = server
        self.data_dir = data_dir
        self.tmp = tmp
        self.hashes = sha256_tree(data_dir / "spider" / "databases")
        self.client = WireClient(server.ws_url)

    def reconnect(self) -> None:
        """A fresh session after a case left the old one out of step."""
        try:
            self.client.close()
        finally:
            self.client = WireClient(self.server.ws_url)


@pytest.fixture(scope="module")
def target(spider_data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("attack")
    server = make_server(
        spider_data_dir,
        SQLENV_QUERY_TIMEOUT_S=str(QUERY_TIMEOUT_S),
        MAX_CONCURRENT_ENVS="8",
    ).start()
    try:
        target = Target(server, spider_data_dir, tmp)
        yield target
        target.client.close()
    finally:
        server.stop()


def test_case_table_is_large_enough():
    assert len(CASES) >= 50


@pytest.mark.parametrize(("action_type", "argument"), CASES)
def test_attack_is_an_error_observation(target: Target, action_type, argument):
    argument = argument.replace("{tmp}", str(target.tmp)).replace(
        "{databases}", str(target.data_dir / "spider" / "databases")
    )
    reset = target.client.reset(split="dev", db_id=DB_ID, seed=0)
    assert reset["type"] == "observation", reset
    episode_id = target.client.state()["data"]["episode_id"]

    started = time.monotonic()
    try:
        reply = target.client.step(action_type, argument, timeout_s=DEADLINE_S)
    except TimeoutError:
        target.reconnect()
        pytest.fail(f"no reply within {DEADLINE_S} s")
    elapsed = time.monotonic() - started

    assert reply["type"] == "observation", reply
    obs = reply["data"]["observation"]
    assert obs["error"], obs
    assert not obs["result"], obs
    assert not reply["data"]["done"], obs
    assert obs["budget_remaining"] > 0, obs
    assert elapsed <= DEADLINE_S, elapsed
    assert target.client.state()["data"]["episode_id"] == episode_id
    assert target.server.alive()


def test_runaway_query_does_not_block_other_sessions(target: Target):
    slow, fast = WireClient(target.server.ws_url), WireClient(target.server.ws_url)
    with slow, fast:
        slow.reset(split="dev", db_id=DB_ID, seed=1)
        fast.reset(split="dev", db_id=DB_ID, seed=2)
        slow.send(
            {
                "type": "step",
                "data": {
                    "action_type": "QUERY",
                    "argument": "SELECT count(*) FROM " + ", ".join(["singer"] * 12),
                },
            }
        )
        reply = fast.step("DESCRIBE", "singer")
        assert not reply["data"]["observation"]["error"], reply
        # The runaway query is still running: its reply has not come yet.
        with pytest.raises(TimeoutError):
            slow.recv(timeout_s=0)
        late = slow.recv(timeout_s=DEADLINE_S)
        assert late["data"]["observation"]["error"], late


def test_episode_goes_on_after_invalid_unicode(target: Target):
    """A lone surrogate (JSON "\\udc80") is an error, and the next step still works."""
    reply = target.client.reset(split="dev", db_id=DB_ID, seed=4)
    assert reply["type"] == "observation", reply
    for action_type, argument in (("DESCRIBE", "singer\udc80"), ("QUERY", "\ud800")):
        reply = target.client.step(action_type, argument)
        assert reply["type"] == "observation", reply
        assert reply["data"]["observation"]["error"], reply
    reply = target.client.step("DESCRIBE", "singer")
    assert reply["type"] == "observation", reply
    assert not reply["data"]["observation"]["error"], reply


def test_server_and_session_survive(target: Target):
    assert target.server.alive()
    assert target.server.healthy()
    reply = target.client.reset(split="dev", db_id=DB_ID, seed=3)
    assert reply["type"] == "observation", reply
    reply = target.client.step("QUERY", "SELECT count(*) FROM singer")
    obs = reply["data"]["observation"]
    assert not obs["error"] and "6" in obs["result"], obs
    reply = target.client.step("SAMPLE", "singer")
    assert not reply["data"]["observation"]["error"], reply


def test_databases_unchanged_and_nothing_written(target: Target):
    assert sha256_tree(target.data_dir / "spider" / "databases") == target.hashes
    assert list(target.tmp.iterdir()) == []
