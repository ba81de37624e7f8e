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
import itertools
import math
from collections import Counter, defaultdict, deque
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

    def matches(self, table: Table, budget: Budget) -> bool:
        """Whether the table equals one listing of the gold rows, in some column order.

        Raises:
            OutOfWork: The budget ran out first.
        """
        width = len(self.columns)
        listings = [lst for lst in self.listings if len(lst.rows) == len(table)]
        if not listings or any(len(row) != width for row in table):
            return False
        if not self.has_floats and _equal_as_written(
            table, listings, self.order_matters
        ):
            return True
        search = _ColumnSearch(table, self, budget)
        return any(search.finds_order(listing) for listing in listings)


def _exact(cell: Cell) -> Key:
    """The key an answer cell equals exactly (a number without its decimals)."""
    return cell[:4] if cell[0] == NUMBER else cell


def _equal_as_written(table: Table, listings: list[GoldListing], ordered: bool) -> bool:
    """The common case, checked first: exact values, columns in the gold order."""
    rows = tuple(tuple(map(_exact, row)) for row in table)
    if ordered:
        return any(rows == listing.rows for listing in listings)
    counts = Counter(rows)
    return any(counts == listing.counts for listing in listings)


# ------------------------------------------------------------- candidates


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
    exact = _exact(cell)
    if cell[0] != NUMBER:
        return cell if cell in column.keys else None
    listed = [exact] if exact in column.keys else []
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


# ----------------------------------------------------------- column orders


class _ColumnSearch:
    """Column orders that make the answer equal a gold listing.

    Identical columns on either side are interchangeable, so each order is
    tried once per arrangement of distinct columns: ten identical gold columns
    have one order, not ten factorial. The answer's own order is tried first.
    """

    def __init__(self, table: Table, gold: GoldTable, budget: Budget) -> None:
        self.table, self.gold, self.budget = table, gold, budget
        width = len(gold.columns)
        budget.charge(len(table) * width)
        classes: dict[tuple[Cell, ...], int] = {}
        self.answer_class = [
            classes.setdefault(tuple(row[j] for row in table), j) for j in range(width)
        ]
        self.members = Counter(self.answer_class)
        self.classes = sorted(self.members)
        self.previous_same = []
        last: dict[int, int] = {}
        for i, c in enumerate(gold.column_class):
            self.previous_same.append(last.get(c, -1))
            last[c] = i
        self._candidates: dict[tuple[int, int], list[Candidate] | None] = {}
        self._singletons: dict[tuple[int, int], Counter[Key]] = {}
        self._signatures: dict[frozenset[tuple[Key, int]], list[int]] | None = None

    def candidates(self, answer_class: int, gold_column: int) -> list[Candidate] | None:
        """Per row, the candidates of an answer column in a gold column (memoised)."""
        gold_class = self.gold.column_class[gold_column]
        memo = (answer_class, gold_class)
        if memo not in self._candidates:
            column = self.gold.columns[gold_class]
            self.budget.charge(len(self.table))
            found: list[Candidate] | None = []
            for row in self.table:
                candidate = candidates(row[answer_class], column, self.budget)
                if candidate is None:
                    found = None
                    break
                found.append(candidate)
            self._candidates[memo] = found
            if found is not None:
                self._singletons[memo] = Counter(
                    c for c in found if isinstance(c, tuple)
                )
        return self._candidates[memo]

    def fits(self, answer_class: int, gold_column: int, listing: GoldListing) -> bool:
        """A necessary test: every cell has a match, and exact ones are not too many."""
        if self.candidates(answer_class, gold_column) is None:
            return False
        singletons = self._singletons[
            (answer_class, self.gold.column_class[gold_column])
        ]
        counts = listing.column_counts[gold_column]
        self.budget.charge(len(singletons))
        return all(counts.get(key, 0) >= n for key, n in singletons.items())

    def finds_order(self, listing: GoldListing) -> bool:
        """Backtrack over gold positions, giving each an answer column class."""
        width = len(self.gold.columns)
        remaining = dict(self.members)
        assign: list[int] = []
        options = [self._options(0, listing)]
        while options:
            choice = next(options[-1], None)
            if choice is None:
                options.pop()
                if assign:
                    remaining[assign.pop()] += 1
                continue
            self.budget.charge(1)
            position = len(assign)
            previous = self.previous_same[position]
            if remaining[choice] == 0 or (previous >= 0 and choice < assign[previous]):
                continue  # used up, or an order already tried among identical columns
            if not self.fits(choice, position, listing):
                continue
            if position + 1 == width:
                if self._rows_match([*assign, choice], listing):
                    return True
                continue
            assign.append(choice)
            remaining[choice] -= 1
            options.append(self._options(position + 1, listing))
        return False

    def _options(self, position: int, listing: GoldListing) -> Iterator[int]:
        """Answer column classes for a gold position: its own column's first.

        A gold column without REALs is matched only by answer columns holding
        exactly its values, which a signature lookup finds without trying the
        others: wide results cost linear, not quadratic, time.
        """
        own = self.answer_class[position]
        classes: Sequence[int] = self.classes
        if not self.gold.columns[position].float_keys:
            counts = listing.column_counts[position]
            self.budget.charge(len(counts))
            classes = self._by_signature().get(frozenset(counts.items()), [])
        first = [own] if own in classes else []
        return itertools.chain(first, (c for c in classes if c != own))

    def _by_signature(self) -> dict[frozenset[tuple[Key, int]], list[int]]:
        """Answer column classes by the multiset of their exact values (memoised)."""
        if self._signatures is None:
            self.budget.charge(len(self.table) * len(self.classes))
            self._signatures = defaultdict(list)
            for c in self.classes:
                values = Counter(_exact(row[c]) for row in self.table)
                self._signatures[frozenset(values.items())].append(c)
        return self._signatures

    def _rows_match(self, assign: list[int], listing: GoldListing) -> bool:
        columns = [self.candidates(c, i) for i, c in enumerate(assign)]
        n, width = len(self.table), len(columns)
        self.budget.charge(n * width)
        if self.gold.order_matters:
            return all(
                accepts(column[r], listing.rows[r][i])
                for r in range(n)
                for i, column in enumerate(columns)
            )
        exact: Counter[Row] = Counter()
        ambiguous: list[tuple[Candidate, ...]] = []
        for row in zip(*columns, strict=True):
            if all(isinstance(c, tuple) for c in row):
                exact[row] += 1
            else:
                ambiguous.append(row)
        if not ambiguous:
            return exact == listing.counts
        rounded = _rounded_rows(
            [self.table[r] for r in range(n)], assign, columns, listing, self.budget
        )
        if rounded is not None:
            return rounded
        residual = dict(listing.counts)
        for row, count in exact.items():
            left = residual.get(row, 0) - count
            if left < 0:
                return False
            residual[row] = left
        wanted = {row: count for row, count in residual.items() if count}
        return _pairs_ambiguous_rows(ambiguous, wanted, self.budget)


# ------------------------------------------------------- rows with choices


def _rounded_rows(
    table: list[tuple[Cell, ...]],
    assign: list[int],
    columns: list[list[Candidate]],
    listing: GoldListing,
    budget: Budget,
) -> bool | None:
    """Match by rounding the gold to the answer's decimals, when that decides.

    In a column whose answer numbers have at most P decimals, where no gold
    REAL lies exactly halfway at P, "the gold rounds to the answer at P" is
    "round(gold, P) == answer": rows then compare as plain multisets. With
    every number written at P that is the rule itself; a number written with
    fewer decimals (JSON drops trailing zeros) is held to P here, which is
    stricter, so only a success decides. Returns None when undecided.
    """
    plans: dict[int, int] = {}  # gold position -> decimals to round to
    uniform = True
    for i, column in enumerate(columns):
        if all(isinstance(c, tuple) for c in column):
            continue
        cells = [row[assign[i]] for row in table]
        if any(c[0] != NUMBER for c in cells):
            return None
        if any(key[0] != FLOAT for key in listing.column_counts[i]):
            return None
        places = {max(MIN_PLACES, c[4]) for c in cells}
        uniform = uniform and len(places) == 1
        plans[i] = max(places)
    budget.charge(len(table) * len(columns) * 2)
    rounding: dict[tuple[Key, int], Key | None] = {}
    gold_rows: Counter[Row] = Counter()
    for row, count in listing.counts.items():
        changed = list(row)
        for i, places in plans.items():
            key = (row[i], places)
            if key not in rounding:
                rounding[key] = _round_half(row[i], places)
            if rounding[key] is None:  # a tie: both neighbours match
                return None
            changed[i] = rounding[key]  # type: ignore[assignment]
        gold_rows[tuple(changed)] += count
    answer_rows: Counter[Row] = Counter()
    for r, row in enumerate(table):
        changed = [column[r] for column in columns]
        for i in plans:
            changed[i] = significant(row[assign[i]], WORKING_DIGITS)
        answer_rows[tuple(changed)] += 1  # type: ignore[arg-type]
    if answer_rows == gold_rows:
        return True
    return False if uniform else None


def _round_half(key: Key, places: int) -> Key | None:
    """A REAL key rounded to ``places`` decimals, or None if exactly halfway.

    Also None when the key is within reach of its 15th digit, where the
    tolerance is not half a unit: then the general matching decides.

    >>> _round_half(("float", False, "196253", -4), 2)
    ('float', False, '1963', -2)
    >>> _round_half(("float", False, "19625", -3), 2) is None
    True
    """
    _, negative, digits, exponent = key
    if digits and exponent + len(digits) - FLOAT_DIGITS >= -places:
        return None
    if exponent >= -places or not digits:
        return key
    drop = -places - exponent
    kept, rest = divmod(int(digits), 10**drop)
    twice = 2 * rest
    if twice == 10**drop:
        return None
    if twice > 10**drop:
        kept += 1
    return significant((NUMBER, negative, str(kept), -places), FLOAT_DIGITS)


def _pairs_ambiguous_rows(
    rows: list[tuple[Candidate, ...]], wanted: dict[Row, int], budget: Budget
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
        options = [c if isinstance(c, Choices) else (c,) for c in group]
        narrow = min(range(len(options)), key=lambda i: len(options[i]))
        if narrow not in by_column:
            budget.charge(len(wanted))
            index: dict[Key, list[Row]] = defaultdict(list)
            for row in wanted:
                index[row[narrow]].append(row)
            by_column[narrow] = index
        budget.charge(len(options[narrow]))
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
    supply: list[int], edges: list[list[Row]], capacity: dict[Row, int], budget: Budget
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
    budget: Budget,
) -> list[tuple[Row, int | None, int]] | None:
    """A path group -> row -> group -> ... -> row with room, by breadth first search.

    Each step ``(row, giver, taker)`` moves units of ``row`` from group
    ``giver`` to group ``taker`` (``giver`` None at the row that has room).
    """
    parent: dict[Row, tuple[int, Row | None]] = {}
    seen_groups = {start}
    queue: deque[tuple[int, Row | None]] = deque([(start, None)])
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
