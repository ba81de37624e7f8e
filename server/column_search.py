"""The search for a column order under which an answer table is a gold listing.

Given a prepared ``GoldTable`` (``result_matching``), ``table_matches`` tries
column orders, identical columns placed once, and matches the rows each order
leaves with choices: by rounding the gold to the answer's decimals when that
decides, else by a bipartite matching with capacities. Every step is charged to
the comparison's ``Budget``; when it runs out, ``OutOfWork`` ends the search.
"""

import itertools
import math
from collections import Counter, defaultdict, deque
from collections.abc import Iterator, Sequence

from sql_env.server.answer_reading import (
    FLOAT,
    FLOAT_DIGITS,
    NUMBER,
    Cell,
    Key,
    significant,
)
from sql_env.server.result_matching import (
    MIN_PLACES,
    WORKING_DIGITS,
    Budget,
    Candidate,
    Choices,
    GoldListing,
    GoldTable,
    Row,
    Table,
    accepts,
    candidates,
    exact,
)


def table_matches(gold: GoldTable, table: Table, budget: Budget) -> bool:
    """Whether the table equals one listing of the gold rows, in some column order.

    Raises:
        OutOfWork: The budget ran out first.
    """
    width = len(gold.columns)
    listings = [lst for lst in gold.listings if len(lst.rows) == len(table)]
    if not listings or any(len(row) != width for row in table):
        return False
    if not gold.has_floats and _equal_as_written(table, listings, gold.order_matters):
        return True
    search = _ColumnSearch(table, gold, budget)
    return any(search.finds_order(listing) for listing in listings)


def _equal_as_written(table: Table, listings: list[GoldListing], ordered: bool) -> bool:
    """The common case, checked first: exact values, columns in the gold order."""
    rows = tuple(tuple(map(exact, row)) for row in table)
    if ordered:
        return any(rows == listing.rows for listing in listings)
    counts = Counter(rows)
    return any(counts == listing.counts for listing in listings)


# ------------------------------------------------------------- candidates


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
                values = Counter(exact(row[c]) for row in self.table)
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
