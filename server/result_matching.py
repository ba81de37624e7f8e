"""Whether a table of answer cells is the gold result: the search behind the verifier.

The gold side is prepared once (``GoldTable.prepare``): its rows as keys, its
accepted listings, and per column an index of its values. An answer table is
then matched column order by column order:

1. Each answer cell becomes its candidates in a gold column: the one key it
   equals, or, for a number against REAL values, the run of sorted REAL keys
   it rounds to (found by bisection, so a dense column costs no more).
2. A column order is tried only if every cell has a candidate and the cells
   with a single candidate are no more than the gold column holds. Identical
   columns on either side are interchangeable and placed once.
3. Rows whose cells all have one candidate are counted against the gold rows.
   Rows left with choices are matched by rounding both sides to the answer's
   decimals when a column is written at one precision, else by a bipartite
   matching with capacities.

Every step is charged to a ``Budget``; when it runs out the search stops with
``OutOfWork`` and the caller refuses the answer. The matching is hand-written
rather than taken from a graph library for that reason: it has to stop.
"""

import bisect
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sql_env.server.answer_reading import (
    FLOAT,
    FLOAT_DIGITS,
    NUMBER,
    Cell,
    Key,
    approximate,
    significant,
)

MIN_PLACES = 2  # an answer is read to at least 2 decimals: JSON drops trailing zeros
MAX_PLACES = 350  # decimals read at most: no double is finer (5e-324)
WORKING_DIGITS = 17  # an answer's digits past these cannot change a comparison
EXACT_CHECK_COST = 8  # budget units of one exact decimal comparison

Row = tuple[Key, ...]
Table = tuple[tuple[Cell, ...], ...]


class OutOfWork(Exception):
    """The comparison used up its budget; the answer is refused."""


class Budget:
    """Work left for one comparison (a local counter, never shared)."""

    __slots__ = ("left",)

    def __init__(self, left: int) -> None:
        self.left = left

    def charge(self, units: int) -> None:
        self.left -= units
        if self.left < 0:
            raise OutOfWork


# ----------------------------------------------------------------- the gold


@dataclass(frozen=True, slots=True)
class GoldColumn:
    """Every value of one gold column, indexed for looking answer cells up."""

    keys: frozenset[Key]
    float_keys: tuple[Key, ...]  # distinct REAL keys, by value
    floats: tuple[float, ...]  # their doubles, for bisection
    float_index: dict[Key, int] = field(compare=False)  # read-only once built

    @classmethod
    def build(cls, keys: Sequence[Key]) -> "GoldColumn":
        reals = sorted(
            {k for k in keys if k[0] == FLOAT}, key=lambda k: approximate(k) or 0.0
        )
        return cls(
            keys=frozenset(keys),
            float_keys=tuple(reals),
            floats=tuple(approximate(k) or 0.0 for k in reals),
            float_index={k: i for i, k in enumerate(reals)},
        )


@dataclass(frozen=True, slots=True)
class GoldListing:
    """One accepted listing of the gold rows: all of them, or each distinct once."""

    rows: tuple[Row, ...]
    counts: dict[Row, int]  # read-only once built
    column_counts: tuple[dict[Key, int], ...]

    @classmethod
    def build(cls, rows: Sequence[Row], column_class: Sequence[int]) -> "GoldListing":
        counts = {
            c: dict(Counter(row[c] for row in rows))
            for c in set(column_class)  # identical columns share one dict
        }
        return cls(
            rows=tuple(rows),
            counts=dict(Counter(rows)),
            column_counts=tuple(counts[c] for c in column_class),
        )


@dataclass(frozen=True, slots=True)
class GoldTable:
    """A gold result prepared for matching: immutable once built, and picklable."""

    order_matters: bool
    listings: tuple[GoldListing, ...]
    columns: tuple[GoldColumn, ...]  # identical columns share one object
    column_class: tuple[int, ...]  # index of the first identical column
    has_floats: bool

    @classmethod
    def prepare(
        cls,
        keyed: Sequence[Row],
        listings: Sequence[Sequence[Row]],
        order_matters: bool,
    ) -> "GoldTable":
        width = len(keyed[0])
        first_of: dict[Row, int] = {}
        column_class = tuple(
            first_of.setdefault(tuple(row[i] for row in keyed), i) for i in range(width)
        )
        built = {
            c: GoldColumn.build([row[c] for row in keyed]) for c in set(column_class)
        }
        return cls(
            order_matters=order_matters,
            listings=tuple(GoldListing.build(rows, column_class) for rows in listings),
            columns=tuple(built[c] for c in column_class),
            column_class=column_class,
            has_floats=any(column.float_keys for column in built.values()),
        )


def exact(cell: Cell) -> Key:
    """The key an answer cell equals exactly (a number without its decimals)."""
    return cell[:4] if cell[0] == NUMBER else cell


@dataclass(frozen=True, slots=True)
class Choices:
    """The gold keys one answer cell matches when there are several.

    Some are listed; the rest are the REAL keys ``lo .. hi-1`` of the column.
    """

    listed: frozenset[Key]
    lo: int
    hi: int
    column: GoldColumn = field(compare=False, repr=False)

    def __contains__(self, key: object) -> bool:
        if key in self.listed:
            return True
        index = self.column.float_index.get(key)  # type: ignore[arg-type]
        return index is not None and self.lo <= index < self.hi

    def __len__(self) -> int:
        return len(self.listed) + self.hi - self.lo

    def __iter__(self) -> Iterator[Key]:
        yield from self.listed
        yield from self.column.float_keys[self.lo : self.hi]


Candidate = Key | Choices


def candidates(cell: Cell, column: GoldColumn, budget: Budget) -> Candidate | None:
    """The keys of a gold column that one answer cell matches: one, several or none."""
    exact_key = exact(cell)
    if cell[0] != NUMBER:
        return cell if cell in column.keys else None
    listed = [exact_key] if exact_key in column.keys else []
    lo = hi = 0
    if column.float_keys:
        near_ties, lo, hi = _float_matches(cell, column, budget)
        listed += near_ties
    count = len(listed) + hi - lo
    if count == 0:
        return None
    if count == 1:
        return listed[0] if listed else column.float_keys[lo]
    return Choices(frozenset(listed), lo, hi, column)


def accepts(candidate: Candidate, key: Key) -> bool:
    return candidate == key if isinstance(candidate, tuple) else key in candidate


def _float_matches(
    cell: Cell, column: GoldColumn, budget: Budget
) -> tuple[list[Key], int, int]:
    """REAL keys an answer number matches: listed ones, and a run ``lo .. hi-1``.

    With one tolerance for the whole window the matching keys are a run of the
    sorted keys, found by bisection and trimmed at its two ends. Near a
    double's 15th digit the tolerance varies from key to key, the window holds
    a handful of keys, and each is checked.
    """
    places = max(MIN_PLACES, cell[4])
    if places > MAX_PLACES:  # digits past a double's finest decimal are ignored
        keep = cell[3] + len(cell[2]) + MAX_PLACES
        cell = significant(cell, keep) if keep > 0 else (NUMBER, False, "", 0)
        places = MAX_PLACES
    value = significant(cell, WORKING_DIGITS)
    near = approximate(value)
    if near is None:  # past a double's range: no REAL is near it
        return [], 0, 0
    tolerance = 0.5 * 10.0**-places
    reach = tolerance + abs(near) * 1e-13  # a superset of the window
    lo = bisect.bisect_left(column.floats, near - reach)
    hi = bisect.bisect_right(column.floats, near + reach)
    budget.charge(1)

    def rounds_to(k: int) -> bool:
        gold = column.floats[k]
        if tolerance > abs(gold) * 1e-8:  # doubles decide unless it is a near tie
            gap = abs(near - gold)
            if gap < tolerance * (1 - 1e-6):
                return True
            if gap > tolerance * (1 + 1e-6):
                return False
        budget.charge(EXACT_CHECK_COST)
        return _rounds_to(value, column.float_keys[k], places)

    if tolerance > abs(near) * 1e-8:
        while lo < hi and not rounds_to(lo):
            lo += 1
        while hi > lo and not rounds_to(hi - 1):
            hi -= 1
        return [], lo, hi
    budget.charge(hi - lo)
    return [column.float_keys[k] for k in range(lo, hi) if rounds_to(k)], 0, 0


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


def keyed_listings(raw: Sequence[tuple[Any, ...]], keyed: list[Row]) -> list[list[Row]]:
    """The accepted listings of the gold rows, as keys, each shorter than the last.

    All rows; each row once as SQL DISTINCT tells them apart; each row once as
    the verifier compares them.

    >>> listings = keyed_listings([(" a",), ("a",), ("a",)], [(("text", "a"),)] * 3)
    >>> [len(listing) for listing in listings]
    [3, 2, 1]
    """
    listings = [keyed]
    try:  # as SQL DISTINCT tells rows apart: ' volkswagen' is not 'volkswagen'
        first: dict[tuple[Any, ...], int] = {}
        for index, row in enumerate(raw):
            first.setdefault(row, index)
        sql_distinct = [keyed[i] for i in sorted(first.values())]
    except TypeError:  # unhashable values: no SQL result has them
        sql_distinct = keyed
    compared_distinct = list(dict.fromkeys(keyed))
    for listing in (sql_distinct, compared_distinct):
        if len(listing) < len(listings[-1]):
            listings.append(listing)
    return listings
