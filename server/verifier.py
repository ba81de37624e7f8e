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

Bounded time: reading an answer is linear in its length (at most
``MAX_ANSWER_CHARS``); comparing it costs at most ``MAX_WORK`` steps, a step
being one cell looked up or one candidate pairing tried, after which the
answer is refused. Real answers use a few times the number of their cells;
only a search over many interchangeable-looking column orders, or thousands of
rows each matching many gold rows, can reach the cap.
"""

import bisect
import itertools
import math
from collections import Counter, defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sql_env.server.answer_reading import (
    FLOAT,
    FLOAT_DIGITS,
    MAX_ANSWER_CHARS,
    NUMBER,
    Cell,
    Key,
    approximate,
    gold_key,
    read_answer,
    read_value,
    significant,
)
from sql_env.server.execution_match import (
    bird_execution_match,
    spider_execution_match,
)

__all__ = [
    "MAX_ANSWER_CHARS",
    "MAX_WORK",
    "Gold",
    "Verdict",
    "bird_execution_match",
    "cell_f1",
    "check_answer",
    "is_degenerate",
    "prepare_gold",
    "rows_match",
    "spider_execution_match",
]

MAX_WORK = 1_000_000  # lookups and pairings per answer: ~1 s of Python at worst
MIN_PLACES = 2  # an answer is read to at least 2 decimals: trailing zeros get dropped
MAX_PLACES = 350  # decimals read at most: no double is finer (5e-324)
WORKING_DIGITS = 17  # an answer's digits past these cannot change a comparison

Row = tuple[Key, ...]
Candidate = Key | frozenset[Key] | None


@dataclass(frozen=True, slots=True)
class _Column:
    """Every value of one gold column, for looking answer cells up."""

    keys: frozenset[Key]
    floats: tuple[float, ...]  # sorted doubles of the column's REAL cells
    float_keys: tuple[Key, ...]  # their keys, in the same order


@dataclass(frozen=True, slots=True)
class _Listing:
    """One accepted listing of the gold rows: all of them, or each distinct once."""

    rows: tuple[Row, ...]
    counts: dict[Row, int]  # read-only after prepare_gold
    column_counts: tuple[dict[Key, int], ...]


@dataclass(frozen=True, slots=True)
class Gold:
    """A gold result normalised once, when its question is loaded.

    Immutable in use (its dicts are never written after ``prepare_gold``) and
    picklable, so worker processes can cache it.

    Attributes:
        width: Columns of the gold result.
        order_matters: Rows must come in the gold order.
        matchable: False for a degenerate or ragged gold: nothing matches it.
    """

    width: int
    order_matters: bool
    matchable: bool
    has_floats: bool = False
    listings: tuple[_Listing, ...] = ()
    columns: tuple[_Column, ...] = ()
    column_class: tuple[int, ...] = ()  # index of the first identical column
    bag: dict[Key, int] | None = None  # cell values for cell F1


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
    """Normalise a gold result once: keys, distinct listings, lookup tables.

    >>> gold = prepare_gold([("Ann", 35.5), ("Bob", 12.25)], order_matters=False)
    >>> gold.width, gold.matchable, len(gold.listings)
    (2, True, 1)
    >>> prepare_gold([(None,)], order_matters=False).matchable
    False
    """
    raw = [tuple(row) for row in rows]
    width = len(raw[0]) if raw else 0
    if not width or is_degenerate(raw) or any(len(row) != width for row in raw):
        return Gold(width=width, order_matters=order_matters, matchable=False)
    keyed = [tuple(gold_key(v) for v in row) for row in raw]
    listings = [keyed]
    try:  # as SQL DISTINCT tells rows apart: ' volkswagen' is not 'volkswagen'
        first: dict[tuple[Any, ...], int] = {}
        for index, row in enumerate(raw):
            first.setdefault(row, index)
        sql_distinct = [keyed[i] for i in sorted(first.values())]
    except TypeError:  # unhashable values: no SQL result has them
        sql_distinct = keyed
    key_distinct = list(dict.fromkeys(keyed))
    for listing in (sql_distinct, key_distinct):
        if len(listing) < len(listings[-1]):
            listings.append(listing)
    columns_by_vector: dict[tuple[Key, ...], int] = {}
    column_class = tuple(
        columns_by_vector.setdefault(tuple(row[i] for row in keyed), i)
        for i in range(width)
    )
    columns = {c: _column(raw, keyed, c) for c in set(column_class)}
    return Gold(
        width=width,
        order_matters=order_matters,
        matchable=True,
        has_floats=any(column.floats for column in columns.values()),
        listings=tuple(_listing(rows_, column_class) for rows_ in listings),
        columns=tuple(columns[c] for c in column_class),
        column_class=column_class,
        bag=dict(Counter(_bag_key(key) for row in keyed for key in row)),
    )


def _listing(rows: list[Row], column_class: tuple[int, ...]) -> _Listing:
    counts = {
        i: dict(Counter(row[i] for row in rows))
        for i in range(len(column_class))
        if column_class[i] == i
    }  # identical columns share one dict (and one copy when pickled)
    return _Listing(
        rows=tuple(rows),
        counts=dict(Counter(rows)),
        column_counts=tuple(counts[c] for c in column_class),
    )


def _column(raw: list[tuple[Any, ...]], keyed: list[Row], i: int) -> _Column:
    reals = sorted(
        {
            row[i]: key[i]
            for row, key in zip(raw, keyed, strict=True)
            if key[i][0] == FLOAT
        }.items()
    )
    return _Column(
        keys=frozenset(row[i] for row in keyed),
        floats=tuple(double for double, _ in reals),
        float_keys=tuple(key for _, key in reals),
    )


def check_answer(text: str, gold: Gold) -> Verdict:
    """Whether an ANSWER text holds the gold result, and how it was read.

    Never raises for any string. Time: linear in ``len(text)`` to read it,
    then at most ``MAX_WORK`` comparison steps.

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
    if not gold.matchable:
        return Verdict(correct=False, reading=reading.description)
    budget = _Budget(MAX_WORK)
    try:
        correct = any(_table_matches(t, gold, budget) for t in reading.tables)
    except _OutOfWork:
        correct = False
    return Verdict(correct=correct, reading=reading.description)


def rows_match(rows: Sequence[Sequence[Any]], gold: Gold) -> bool:
    """Whether a QUERY result (SQLite values) holds the gold result.

    The same rules as ``check_answer``, the rows read as an agent would
    write them (a float with its shortest repr).

    >>> gold = prepare_gold([("Ann", 19.6253)], order_matters=False)
    >>> rows_match([(19.63, "ann")], gold), rows_match([("Ann", 19.6)], gold)
    (True, False)
    """
    if not gold.matchable:
        return False
    table = tuple(tuple(read_value(v) for v in row) for row in rows)
    try:
        return _table_matches(table, gold, _Budget(MAX_WORK))
    except _OutOfWork:
        return False


def cell_f1(rows: Sequence[Sequence[Any]], gold: Gold) -> float:
    """F1 of the two results' cell values as multisets, ignoring layout.

    A coarse closeness for reward shaping: it rises as a query's result holds
    more of the gold values and fewer others. Numbers count as equal at 15
    significant digits. Linear in the number of cells.

    >>> gold = prepare_gold([(1, "A")], order_matters=False)
    >>> cell_f1([[1, "a"]], gold), round(cell_f1([[1], [2]], gold), 3)
    (1.0, 0.5)
    """
    if not gold.bag:
        return 0.0
    found = Counter(_bag_key(read_value(v)) for row in rows for v in row)
    common = sum(min(count, gold.bag.get(key, 0)) for key, count in found.items())
    if not common:
        return 0.0
    precision = common / sum(found.values())
    recall = common / sum(gold.bag.values())
    return 2 * precision * recall / (precision + recall)


def _bag_key(cell: Cell) -> Key:
    if cell[0] == NUMBER:
        return significant(cell, FLOAT_DIGITS)
    return cell


# ------------------------------------------------------------------ matching


class _OutOfWork(Exception):
    """The comparison used up its budget; the answer is refused."""


class _Budget:
    """Work left for one comparison (a local counter, not shared state)."""

    __slots__ = ("left",)

    def __init__(self, left: int) -> None:
        self.left = left

    def charge(self, units: int) -> None:
        self.left -= units
        if self.left < 0:
            raise _OutOfWork


def _table_matches(
    table: tuple[tuple[Cell, ...], ...], gold: Gold, budget: _Budget
) -> bool:
    """Whether one reading of the answer equals one listing of the gold rows."""
    listings = [lst for lst in gold.listings if len(lst.rows) == len(table)]
    if not listings or any(len(row) != gold.width for row in table):
        return False
    if not gold.has_floats and _equal_as_written(table, listings, gold.order_matters):
        return True
    search = _ColumnSearch(table, gold, budget)
    return any(search.finds_order(listing) for listing in listings)


def _equal_as_written(
    table: tuple[tuple[Cell, ...], ...], listings: list[_Listing], ordered: bool
) -> bool:
    """The common case, checked first: exact values, columns in the gold order."""
    rows = tuple(tuple(c[:4] if c[0] == NUMBER else c for c in row) for row in table)
    if ordered:
        return any(rows == listing.rows for listing in listings)
    counts = Counter(rows)
    return any(counts == listing.counts for listing in listings)


class _ColumnSearch:
    """Column orders that make the answer equal a gold listing.

    Identical columns on either side are interchangeable, so each order is
    tried once per arrangement of distinct columns: ten identical gold columns
    have one order, not ten factorial. The answer's own order is tried first.
    """

    def __init__(
        self, table: tuple[tuple[Cell, ...], ...], gold: Gold, budget: _Budget
    ) -> None:
        self.table, self.gold, self.budget = table, gold, budget
        budget.charge(len(table) * gold.width)
        classes: dict[tuple[Cell, ...], int] = {}
        self.answer_class = [
            classes.setdefault(tuple(row[j] for row in table), j)
            for j in range(gold.width)
        ]
        self.members: dict[int, list[int]] = defaultdict(list)
        for j, c in enumerate(self.answer_class):
            self.members[c].append(j)
        self.previous_same = []
        last: dict[int, int] = {}
        for i, c in enumerate(gold.column_class):
            self.previous_same.append(last.get(c, -1))
            last[c] = i
        self._candidates: dict[tuple[int, int], list[Candidate] | None] = {}
        self._singletons: dict[tuple[int, int], Counter[Key]] = {}

    def candidates(self, answer_class: int, gold_column: int) -> list[Candidate] | None:
        """Per row, the gold keys of a gold column that an answer cell matches."""
        gold_class = self.gold.column_class[gold_column]
        memo = (answer_class, gold_class)
        if memo not in self._candidates:
            column = self.gold.columns[gold_class]
            self.budget.charge(len(self.table))
            found: list[Candidate] | None = []
            for row in self.table:
                candidate = _candidates(row[answer_class], column, self.budget)
                if candidate is None:
                    found = None
                    break
                found.append(candidate)
            self._candidates[memo] = found
            if found is not None:
                self._singletons[memo] = Counter(
                    c for c in found if not isinstance(c, frozenset)
                )
        return self._candidates[memo]

    def fits(self, answer_class: int, gold_column: int, listing: _Listing) -> bool:
        """A necessary test: every cell has a match, and exact ones are not too many."""
        if self.candidates(answer_class, gold_column) is None:
            return False
        singletons = self._singletons[
            (answer_class, self.gold.column_class[gold_column])
        ]
        counts = listing.column_counts[gold_column]
        self.budget.charge(len(singletons))
        return all(counts.get(key, 0) >= n for key, n in singletons.items())

    def finds_order(self, listing: _Listing) -> bool:
        """Backtrack over gold positions, giving each an answer column class."""
        width = self.gold.width
        remaining = {c: len(m) for c, m in self.members.items()}
        classes = sorted(remaining)
        assign: list[int] = []
        options: list[list[int]] = [
            self._options(0, assign, remaining, classes, listing)
        ]
        while options:
            if not options[-1]:
                options.pop()
                if assign:
                    remaining[assign.pop()] += 1
                continue
            choice = options[-1].pop(0)
            assign.append(choice)
            remaining[choice] -= 1
            if len(assign) == width:
                if self._rows_match(assign, listing):
                    return True
                remaining[assign.pop()] += 1
                continue
            options.append(
                self._options(len(assign), assign, remaining, classes, listing)
            )
        return False

    def _options(
        self,
        position: int,
        assign: list[int],
        remaining: dict[int, int],
        classes: list[int],
        listing: _Listing,
    ) -> list[int]:
        self.budget.charge(1)
        previous = self.previous_same[position]
        floor = assign[previous] if previous >= 0 else -1
        own = self.answer_class[position]
        ordered = [own] + [c for c in classes if c != own]
        return [
            c
            for c in ordered
            if remaining[c] > 0 and c >= floor and self.fits(c, position, listing)
        ]

    def _rows_match(self, assign: list[int], listing: _Listing) -> bool:
        columns = [self.candidates(c, i) for i, c in enumerate(assign)]
        n, width = len(self.table), self.gold.width
        self.budget.charge(n * width)
        if self.gold.order_matters:
            return all(
                _accepts(column[r], listing.rows[r][i])
                for r in range(n)
                for i, column in enumerate(columns)
            )
        exact: Counter[Row] = Counter()
        ambiguous: list[tuple[Candidate, ...]] = []
        for row in zip(*columns, strict=True):
            if any(isinstance(c, frozenset) for c in row):
                ambiguous.append(row)
            else:
                exact[row] += 1
        residual = dict(listing.counts)
        for row, count in exact.items():
            left = residual.get(row, 0) - count
            if left < 0:
                return False
            residual[row] = left
        if not ambiguous:
            return True
        wanted = {row: count for row, count in residual.items() if count}
        return _pairs_ambiguous_rows(ambiguous, wanted, self.budget)


def _accepts(candidate: Candidate, key: Key) -> bool:
    if isinstance(candidate, frozenset):
        return key in candidate
    return candidate == key


def _candidates(cell: Cell, column: _Column, budget: _Budget) -> Candidate:
    """The keys of a gold column that one answer cell matches: one, several or none."""
    if cell[0] != NUMBER:
        return cell if cell in column.keys else None
    exact = cell[:4]
    found = [exact] if exact in column.keys else []
    if column.floats:
        found.extend(_float_matches(cell, column, budget))
    if not found:
        return None
    distinct = frozenset(found)
    return found[0] if len(distinct) == 1 else distinct


def _float_matches(cell: Cell, column: _Column, budget: _Budget) -> list[Key]:
    """REAL gold values an answer number matches at its written precision."""
    places = max(MIN_PLACES, cell[4])
    if places > MAX_PLACES:  # digits past a double's finest decimal are ignored
        keep = cell[3] + len(cell[2]) + MAX_PLACES
        cell = significant(cell, keep) if keep > 0 else (NUMBER, False, "", 0)
        places = MAX_PLACES
    value = significant(cell, WORKING_DIGITS)
    near = approximate(value)
    if near is None:  # past a double's range: no REAL is near it
        return []
    reach = 0.5 * 10.0**-places + abs(near) * 1e-13  # a superset, checked exactly
    lo = bisect.bisect_left(column.floats, near - reach)
    hi = bisect.bisect_right(column.floats, near + reach)
    budget.charge(hi - lo)
    return [
        column.float_keys[k]
        for k in range(lo, hi)
        if _rounds_to(value, column.float_keys[k], places)
    ]


def _rounds_to(answer: Key, gold: Key, places: int) -> bool:
    """Whether a REAL (15 digits) is the answer at its precision, exactly.

    Within half a unit of the answer's last place, ties included (so half-up
    and half-even rounding both match). An answer written past the gold's
    15th significant digit may differ from it by one unit there: that much a
    double's summation order changes, on either side of a rounding boundary.

    >>> _rounds_to(("float", False, "1962", -2), ("float", False, "19625", -3), 2)
    True
    >>> _rounds_to(("float", False, "1956", -2), ("float", False, "19625", -3), 2)
    False
    """
    tolerance_exp, halves = -places, 1
    if gold[2]:
        fifteenth = gold[3] + len(gold[2]) - FLOAT_DIGITS
        if -places <= fifteenth:
            tolerance_exp, halves = fifteenth, 2
    base = min(answer[3], gold[3], tolerance_exp - 1)
    a = int(answer[2] or "0") * 10 ** (answer[3] - base) * (-1 if answer[1] else 1)
    g = int(gold[2] or "0") * 10 ** (gold[3] - base) * (-1 if gold[1] else 1)
    return 2 * abs(a - g) <= halves * 10 ** (tolerance_exp - base)


def _pairs_ambiguous_rows(
    rows: list[tuple[Candidate, ...]], wanted: dict[Row, int], budget: _Budget
) -> bool:
    """Whether rows with several possible gold partners can all be paired.

    A bipartite matching with capacities (rows alike are grouped), solved by
    augmenting paths; every edge looked at is charged to the budget.
    """
    groups = Counter(rows)
    supply = list(groups.values())
    edges: list[list[Row]] = []
    by_column: dict[int, dict[Key, list[Row]]] = {}
    for group in groups:
        options = [c if isinstance(c, frozenset) else (c,) for c in group]
        narrow = min(range(len(options)), key=lambda i: len(options[i]))
        if narrow not in by_column:
            budget.charge(len(wanted))
            index: dict[Key, list[Row]] = defaultdict(list)
            for row in wanted:
                index[row[narrow]].append(row)
            by_column[narrow] = index
        pool = [
            row for key in options[narrow] for row in by_column[narrow].get(key, ())
        ]
        combinations = math.prod(len(o) for o in options)
        if combinations < len(pool):
            budget.charge(combinations * len(group))
            reach = [row for row in itertools.product(*options) if row in wanted]
        else:
            budget.charge(len(pool) * len(group))
            reach = [
                row
                for row in pool
                if all(key in opt for key, opt in zip(row, options, strict=True))
            ]
        if not reach:
            return False
        edges.append(reach)
    return _saturates(supply, edges, wanted, budget)


def _saturates(
    supply: list[int], edges: list[list[Row]], capacity: dict[Row, int], budget: _Budget
) -> bool:
    """Max flow from row groups to gold rows equals the total supply."""
    flow: dict[Row, dict[int, int]] = defaultdict(dict)  # gold row -> group -> units
    used = dict.fromkeys(capacity, 0)
    left = supply[:]
    for g, reach in enumerate(edges):  # greedy start, then augment
        for row in reach:
            take = min(left[g], capacity[row] - used[row])
            if take:
                flow[row][g] = flow[row].get(g, 0) + take
                used[row] += take
                left[g] -= take
    for start in range(len(supply)):
        while left[start]:
            path = _augmenting_path(start, edges, flow, used, capacity, budget)
            if path is None:
                return False
            amount = left[start]
            for row, giver, _ in path:
                if giver is not None:
                    amount = min(amount, flow[row][giver])
            end_row = path[-1][0]
            amount = min(amount, capacity[end_row] - used[end_row])
            for row, giver, taker in path:
                flow[row][taker] = flow[row].get(taker, 0) + amount
                if giver is not None:
                    flow[row][giver] -= amount
            used[end_row] += amount
            left[start] -= amount
    return True


def _augmenting_path(
    start: int,
    edges: list[list[Row]],
    flow: dict[Row, dict[int, int]],
    used: dict[Row, int],
    capacity: dict[Row, int],
    budget: _Budget,
) -> list[tuple[Row, int | None, int]] | None:
    """A path group -> row -> group -> ... -> row with room, by breadth first search.

    Each step ``(row, giver, taker)`` moves units of ``row`` from group
    ``giver`` to group ``taker`` (``giver`` None at the row that has room).
    """
    parent: dict[Row, tuple[int, Row | None]] = {}
    seen_groups = {start}
    queue = deque([(start, None)])
    while queue:
        group, via = queue.popleft()
        budget.charge(len(edges[group]) + 1)
        for row in edges[group]:
            if row in parent:
                continue
            parent[row] = (group, via)
            if used[row] < capacity[row]:
                steps: list[tuple[Row, int | None, int]] = []
                cursor: Row | None = row
                giver: int | None = None
                while cursor is not None:
                    taker, previous = parent[cursor]
                    steps.append((cursor, giver, taker))
                    giver, cursor = taker, previous
                steps.reverse()
                return steps
            for other, units in flow[row].items():
                if units and other not in seen_groups:
                    seen_groups.add(other)
                    queue.append((other, row))
    return None
