"""Shared fixtures: a tiny Spider-like source built by the real data build.

``tiny_data_dir`` is fast and self-contained (two small SQLite databases);
``spider_data_dir`` is the real data built by ``make data`` and is only used
by tests marked ``slow``.
"""

import functools
import http.server
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sql_env.ingest.build import build
from sql_env.server.question_bank import DEFAULT_DATA_DIR, load_bank
from tests.source_fixtures import make_database

SHOP_SQL = """
CREATE TABLE customer (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, country TEXT, score REAL
);
CREATE TABLE orders (
    order_id INTEGER PRIMARY KEY,
    customer_id INTEGER REFERENCES customer(id),
    amount REAL,
    note TEXT
);
INSERT INTO customer VALUES
    (1, 'Ann', 'France', 3.25), (2, 'Bob', 'USA', 4.5), (3, 'Cleo', 'France', NULL),
    (4, 'Dan', 'Spain', 2.0), (5, 'Eve', 'USA', 4.75), (6, 'Finn', NULL, 1.5);
INSERT INTO orders VALUES
    (10, 1, 20.0, NULL), (11, 1, 35.5, NULL), (12, 2, 12.25, 'gift'),
    (13, 3, 99.0, NULL), (14, 5, 5.0, NULL), (15, 5, 7.5, 'rush');
"""

SCHOOL_SQL = """
CREATE TABLE student (sid INTEGER PRIMARY KEY, name TEXT, age INTEGER);
CREATE TABLE course (cid INTEGER PRIMARY KEY, title TEXT);
CREATE TABLE enrolment (
    sid INTEGER REFERENCES student(sid), cid INTEGER REFERENCES course(cid),
    PRIMARY KEY (sid, cid)
);
INSERT INTO student VALUES (1, 'Ana', 20), (2, 'Ben', 22), (3, 'Cy', 20);
INSERT INTO course VALUES (1, 'Math'), (2, 'Art');
INSERT INTO enrolment VALUES (1, 1), (1, 2), (2, 1);
"""

DEV = [
    ("How many customers are there?", "SELECT count(*) FROM customer", "shop"),
    (
        "Names of customers from France, by name.",
        "SELECT name FROM customer WHERE country = 'France' ORDER BY name",
        "shop",
    ),
    ("Average order amount?", "SELECT avg(amount) FROM orders", "shop"),
    (
        "Countries and their number of customers.",
        "SELECT country, count(*) FROM customer GROUP BY country",
        "shop",
    ),
    (
        "Customer names and amounts of their orders, largest first.",
        "SELECT c.name, o.amount FROM customer c JOIN orders o "
        "ON o.customer_id = c.id ORDER BY o.amount DESC",
        "shop",
    ),
    (
        "Countries of customers with orders?",
        "SELECT country FROM customer JOIN orders ON orders.customer_id = customer.id",
        "shop",
    ),
    (
        "Customers from Mars?",
        "SELECT name FROM customer WHERE country = 'Mars'",
        "shop",
    ),
    ("Notes of order 10?", "SELECT note FROM orders WHERE order_id = 10", "shop"),
    ("Broken gold.", "SELECT nope FROM customer", "shop"),
    ("A question on a missing database.", "SELECT 1", "ghost_db"),
]
TRAIN = [
    ("How many students?", "SELECT count(*) FROM student", "school"),
    ("Titles of all courses.", "SELECT title FROM course", "school"),
    (
        "Students aged 20, by name.",
        "SELECT name FROM student WHERE age = 20 ORDER BY name",
        "school",
    ),
]


def make_spider_source(root: Path) -> Path:
    """A directory laid out like Spider, with two small databases."""
    make_database(root / "database" / "shop" / "shop.sqlite", SHOP_SQL)
    make_database(root / "database" / "school" / "school.sqlite", SCHOOL_SQL)
    for name, items in (("dev.json", DEV), ("train_spider.json", TRAIN)):
        records = [{"question": q, "query": sql, "db_id": db} for q, sql, db in items]
        (root / name).write_text(json.dumps(records))
    (root / "tables.json").write_text("[]")
    return root


@pytest.fixture(scope="session")
def tiny_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_spider_source(tmp_path_factory.mktemp("spider_src"))


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory: pytest.TempPathFactory, tiny_source: Path) -> Path:
    data_dir = tmp_path_factory.mktemp("data")
    build("spider", [str(tiny_source)], data_dir)
    return data_dir


@pytest.fixture
def serve_dir() -> Iterator[Callable[[Path], str]]:
    """Serve a directory over HTTP on localhost; returns its base URL."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(directory: Path) -> str:
        handler = functools.partial(
            http.server.SimpleHTTPRequestHandler, directory=str(directory)
        )
        handler.log_message = lambda *args: None  # type: ignore[attr-defined]
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def spider_data_dir() -> Path:
    """The real bank from `make data`; a missing build is a failure, not a skip."""
    load_bank(DEFAULT_DATA_DIR)  # raises with "run `make data`" when absent
    return DEFAULT_DATA_DIR
