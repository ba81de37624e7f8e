"""Answer checking: does an ANSWER text, or a QUERY result, hold the gold result?

Pure functions and frozen values: no I/O, no clock, no globals. The gold result
is normalised once by ``prepare_gold``; each answer is then read
(``sql_env.server.answer_reading``) and compared with it. The rules, with
examples, are in docs/reward.md:

- Rows compare as a multiset; their order counts only when the gold SQL has an
  outer ORDER BY. Columns may come in any order.
- A 1x1 gold result matches a scalar; a one-column or one-row result matches a
  flat list.
- An answer listing each distinct gold row once also matches (the official
  Spider evaluator ignores DISTINCT), whether rows are told apart as SQL does
  (``' volkswagen'`` and ``'volkswagen'`` are two rows) or as this verifier
  compares them (they are one).
- Integers and numeric text compare exactly. A REAL follows the precision
  the answer was written with: ``19.63``, ``19.625`` and ``19.6253`` all match
  19.6253 (it rounds to each); ``19.6`` and ``20`` do not, as an answer with
  fewer than 2 decimals is read at 2 (JSON writes ``ROUND(x, 2)`` = 783.80 as
  783.8). A value exactly halfway matches both neighbours, so half-up,
  half-even and binary rounding are all accepted. Past its 15th significant
  digit a double carries only summation noise, which is ignored.
- Strings are trimmed and compared case-insensitively; NULL equals null,
  None and the empty string.
- A degenerate gold result (no rows, or only NULLs) never matches anything.

Bounded time, for any gold and any answer: reading is linear in the text
(refused unread past ``MAX_ANSWER_CHARS``); comparing takes at most
``MAX_WORK + WORK_PER_CELL * cells`` steps, a step being one cell looked up,
one column order tried or one pairing of rows considered, after which the
answer is refused. Real answers use 4 to 10 steps a cell; only adversarial
shapes reach the cap (many columns agreeing on every partial projection, or
dense REAL columns written at mixed precisions), and docs/reward.md gives
the times measured there.
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sql_env.server.answer_reading import (
    FLOAT_DIGITS,
    MAX_ANSWER_CHARS,
    NUMBER,
    Cell,
    Key,
    gold_key,
    read_answer,
    read_value,
    significant,
)
from sql_env.server.column_search import table_matches
from sql_env.server.execution_match import (
    bird_execution_match,
    spider_execution_match,
)
from sql_env.server.result_matching import (
    Budget,
    GoldTable,
    OutOfWork,
    Table,
    keyed_listings,
)

__all__ = [
    "MAX_ANSWER_CHARS",
    "MAX_WORK",
    "WORK_PER_CELL",
    "Gold",
    "Verdict",
    "bird_execution_match",
    "cell_f1",
    "check_answer",
    "is_degenerate",
    "prepare_gold",
    "read_result",
    "rows_match",
    "spider_execution_match",
]

MAX_WORK = 200_000  # comparison steps any answer may use, plus WORK_PER_CELL each
WORK_PER_CELL = 50  # real answers use 4-10 per cell; a search past this is refused


@dataclass(frozen=True, slots=True)
class Gold:
    """A gold result normalised once, when its question is loaded.

    Immutable (nothing in it is written after ``prepare_gold``) and picklable,
    so worker processes can cache it.

    Attributes:
        width: Columns of the gold result.
        order_matters: Rows must come in the gold order.
        matchable: False for a degenerate or ragged gold: nothing matches it.
    """

    width: int
    order_matters: bool
    matchable: bool
    table: GoldTable | None = None
    bag: dict[Key, int] | None = None  # cell values with counts, for cell F1


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one ANSWER.

    Attributes:
        correct: The answer holds the gold result.
        reading: How the answer was read ("read as 3 rows x 2 columns");
            never anything about the gold.
    """

    correct: bool
    reading: str


def is_degenerate(gold_rows: Sequence[Sequence[Any]]) -> bool:
    """No rows, or nothing but NULLs: such a result proves nothing.

    >>> is_degenerate([]), is_degenerate([(None,)]), is_degenerate([(0,)])
    (True, True, False)
    """
    return not gold_rows or all(v is None for row in gold_rows for v in row)


def prepare_gold(rows: Sequence[Sequence[Any]], order_matters: bool) -> Gold:
    """Normalise a gold result once: keys, accepted listings, lookup tables.

    >>> gold = prepare_gold([("Ann", 35.5), ("Bob", 12.25)], order_matters=False)
    >>> gold.width, gold.matchable
    (2, True)
    >>> prepare_gold([(None,)], order_matters=False).matchable
    False
    """
    raw = [tuple(row) for row in rows]
    width = len(raw[0]) if raw else 0
    if not width or is_degenerate(raw) or any(len(row) != width for row in raw):
        return Gold(width=width, order_matters=order_matters, matchable=False)
    keyed = [tuple(gold_key(v) for v in row) for row in raw]
    return Gold(
        width=width,
        order_matters=order_matters,
        matchable=True,
        table=GoldTable.prepare(keyed, keyed_listings(raw, keyed), order_matters),
        bag=dict(Counter(_bag_key(key) for row in keyed for key in row)),
    )


def check_answer(text: str, gold: Gold) -> Verdict:
    """Whether an ANSWER text holds the gold result, and how it was read.

    Never raises for any string. Time: linear in ``len(text)`` to read it,
    then at most ``MAX_WORK + WORK_PER_CELL * cells`` comparison steps.

    >>> gold = prepare_gold([("USA",), ("France",)], order_matters=False)
    >>> check_answer('["France", "usa"]', gold)
    Verdict(correct=True, reading='read as a list of 2 values')
    >>> check_answer("France", gold)
    Verdict(correct=False, reading='read as one value')
    >>> avg = prepare_gold([(19.6253,)], order_matters=False)
    >>> [check_answer(t, avg).correct for t in ("19.63", "19.625", "19.6", "19.56")]
    [True, True, False, False]
    """
    reading = read_answer(text)
    if gold.table is None:
        return Verdict(correct=False, reading=reading.description)
    budget = _budget(reading.tables)
    try:
        correct = any(table_matches(gold.table, t, budget) for t in reading.tables)
    except OutOfWork:
        correct = False
    return Verdict(correct=correct, reading=reading.description)


def read_result(rows: Sequence[Sequence[Any]]) -> Table:
    """A QUERY result's cells, read as an agent would write them (floats by repr).

    Linear in the result's size; each distinct value is read once.

    >>> read_result([(19.63, "Ann", None)])
    ((('number', False, '1963', -2, 2), ('text', 'ann'), ('null',)),)
    """
    seen: dict[tuple[type, Any], Cell] = {}

    def cell(value: Any) -> Cell:
        try:
            key = (type(value), value)
            found = seen.get(key)
        except TypeError:  # unhashable: a list never comes from SQLite
            return read_value(value)
        if found is None:
            found = seen[key] = read_value(value)
        return found

    return tuple(tuple(map(cell, row)) for row in rows)


def rows_match(table: Table, gold: Gold) -> bool:
    """Whether a QUERY result (from ``read_result``) holds the gold result.

    The same rules as ``check_answer``, and the same bound on its work.

    >>> gold = prepare_gold([("Ann", 19.6253)], order_matters=False)
    >>> rows_match(read_result([(19.63, "ann")]), gold)
    True
    >>> rows_match(read_result([("Ann", 19.6)]), gold)
    False
    """
    if gold.table is None:
        return False
    try:
        return table_matches(gold.table, table, _budget([table]))
    except OutOfWork:
        return False


def cell_f1(table: Table, gold: Gold) -> float:
    """F1 of the two results' cell values as multisets, ignoring layout.

    A coarse closeness for reward shaping: it rises as a query's result holds
    more of the gold values and fewer others. Numbers count as equal at 15
    significant digits. Linear in the number of cells.

    >>> gold = prepare_gold([(1, "A")], order_matters=False)
    >>> cell_f1(read_result([[1, "a"]]), gold), cell_f1(read_result([[1], [2]]), gold)
    (1.0, 0.5)
    """
    if not gold.bag:
        return 0.0
    found = Counter(_bag_key(cell) for row in table for cell in row)
    common = sum(min(count, gold.bag.get(key, 0)) for key, count in found.items())
    if not common:
        return 0.0
    precision = common / sum(found.values())
    recall = common / sum(gold.bag.values())
    return 2 * precision * recall / (precision + recall)


def _budget(tables: Sequence[Table]) -> Budget:
    cells = sum(len(row) for table in tables for row in table)
    return Budget(MAX_WORK + WORK_PER_CELL * cells)


def _bag_key(cell: Cell) -> Key:
    if cell[0] == NUMBER:
        return significant(cell, FLOAT_DIGITS)
    return cell
