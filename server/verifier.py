"""Answer checking with the semantics of Spider's official test-suite evaluator.

Pure functions: values in, ``bool`` or a score out. The rules (with examples in
docs/reward.md):

- Rows compare as a multiset; their order counts only when the gold SQL has an
  outer ORDER BY. Columns may come in any order.
- A 1x1 gold result matches a scalar; a one-column or one-row result matches a
  flat list.
- An answer listing each distinct value once also matches a gold result with
  repeated rows (the official evaluator ignores DISTINCT by default).
- Integers compare exactly; other numbers within a relative tolerance
  (Spider's float results are often long averages that agents round).
- Strings are trimmed and compared case-insensitively; a numeric string equals
  its number; NULL equals null, None and the empty string.
- A degenerate gold result (no rows, or only NULLs) never matches anything.
"""

import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_REL_TOL = 0.01  # 1%: Spider averages are long floats that agents round
ABS_TOL = 1e-9
MAX_PERMUTATIONS = 2_000  # column orders tried; real results need one or two
NULL_TOKENS = frozenset({"", "null", "none"})
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_FENCE = re.compile(r"^```[\w-]*\s*\n?(.*?)\n?```$", re.DOTALL)

Value = None | int | float | str
Row = tuple[Any, ...]


def normalize(value: Any) -> Value:
    """One comparable form for a cell from SQLite, JSON or plain text.

    >>> normalize("  Paris ")
    'paris'
    >>> normalize("42"), normalize(42.0), normalize(True)
    (42, 42, 1)
    >>> normalize("3.50"), normalize("null"), normalize("")
    (3.5, None, None)
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = str(value).strip()
    if text.lower() in NULL_TOKENS:
        return None
    if _NUMBER.fullmatch(text):
        if any(c in text for c in ".eE"):
            return normalize(float(text))
        return int(text)
    return text.casefold()


def _gold_value(value: Any) -> Value:
    """Gold cells keep floats as floats, so 2.0 from AVG() stays tolerant."""
    if isinstance(value, float):
        return value
    return normalize(value)


def parse_answer(text: str) -> list[list[Any]]:
    """Every reading of an ANSWER argument as a table of rows.

    JSON is parsed when it is JSON (a scalar, a list, a list of lists, or
    objects); otherwise the text is one value, or one value per line. A flat
    list has two readings: one column, or one row.

    >>> parse_answer("42")
    [[[42]]]
    >>> parse_answer('["a", "b"]')
    [[['a'], ['b']], [['a', 'b']]]
    >>> parse_answer("[[1, 'x']]".replace("'", '"'))
    [[[1, 'x']]]
    >>> parse_answer("Paris\\nLondon")
    [[['Paris'], ['London']], [['Paris', 'London']]]
    """
    text = text.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    parsed = _json_or_none(text)
    if parsed is _NOT_JSON:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if len(lines) <= 1:
            return [[[text]]]
        parsed = [_line_value(line) for line in lines]
    return _readings(parsed)


_NOT_JSON = object()


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return _NOT_JSON


def _line_value(line: str) -> Any:
    value = _json_or_none(line)
    return line if value is _NOT_JSON else value


def _as_row(item: Any) -> list[Any]:
    if isinstance(item, list | tuple):
        return list(item)
    if isinstance(item, dict):
        return list(item.values())
    return [item]


def _readings(parsed: Any) -> list[list[list[Any]]]:
    if isinstance(parsed, dict):
        rows = parsed.get("rows")
        if isinstance(rows, list):
            return [[_as_row(r) for r in rows]]
        return [[list(parsed.values())]]
    if not isinstance(parsed, list):
        return [[[parsed]]]
    if all(isinstance(item, list | tuple | dict) for item in parsed) and parsed:
        return [[_as_row(item) for item in parsed]]
    if any(isinstance(item, list | tuple | dict) for item in parsed):
        return [[_as_row(item) for item in parsed]]
    return [[[item] for item in parsed], [list(parsed)]]


def is_degenerate(gold_rows: Sequence[Row]) -> bool:
    """No rows, or nothing but NULLs: such a result proves nothing.

    >>> is_degenerate([]), is_degenerate([(None,)]), is_degenerate([(0,)])
    (True, True, False)
    """
    return not gold_rows or all(v is None for row in gold_rows for v in row)


def answer_matches(
    answer: str,
    gold_rows: Sequence[Row],
    order_matters: bool,
    rel_tol: float = DEFAULT_REL_TOL,
) -> bool:
    """Whether an ANSWER argument matches the gold result.

    >>> answer_matches("6", [(6,)], False)
    True
    >>> answer_matches('["France", "usa"]', [("USA",), ("France",)], False)
    True
    >>> answer_matches('["France", "usa"]', [("USA",), ("France",)], True)
    False
    >>> answer_matches("3.33", [(3.3333,)], False), answer_matches("7", [(6,)], False)
    (True, False)
    """
    if is_degenerate(gold_rows):
        return False
    return any(
        results_match(reading, gold_rows, order_matters, rel_tol)
        for reading in parse_answer(answer)
    )


def results_match(
    rows: Sequence[Sequence[Any]],
    gold_rows: Sequence[Row],
    order_matters: bool,
    rel_tol: float = DEFAULT_REL_TOL,
) -> bool:
    """Whether a table of values equals the gold result (rows or distinct rows).

    >>> results_match([[2, "b"], [1, "a"]], [("a", 1), ("b", 2)], False)
    True
    >>> results_match([["x"]], [("x",), ("x",)], False)  # distinct listing
    True
    >>> results_match([[1], [1]], [(1,)], False)
    False
    """
    if is_degenerate(gold_rows):
        return False
    candidate = [tuple(normalize(v) for v in row) for row in rows]
    gold = [tuple(_gold_value(v) for v in row) for row in gold_rows]
    if _table_match(candidate, gold, order_matters, rel_tol):
        return True
    distinct_gold = list(dict.fromkeys(gold))
    return (
        len(distinct_gold) < len(gold)
        and len(set(candidate)) == len(candidate)
        and _table_match(candidate, distinct_gold, order_matters, rel_tol)
    )


def _table_match(
    candidate: list[tuple[Value, ...]],
    gold: list[tuple[Value, ...]],
    ordered: bool,
    rel_tol: float,
) -> bool:
    if len(candidate) != len(gold):
        return False
    width = len(gold[0])
    if any(len(row) != width for row in candidate):
        return False
    tolerant = tuple(
        any(isinstance(row[i], float) for row in gold) for i in range(width)
    )
    for tried, order in enumerate(_column_orders(candidate, gold, tolerant, rel_tol)):
        if tried >= MAX_PERMUTATIONS:
            return False
        permuted = [tuple(row[j] for j in order) for row in candidate]
        if _rows_equal(permuted, gold, tolerant, ordered, rel_tol):
            return True
    return False


def _column_orders(
    candidate: list[tuple[Value, ...]],
    gold: list[tuple[Value, ...]],
    tolerant: tuple[bool, ...],
    rel_tol: float,
) -> Iterator[tuple[int, ...]]:
    """Candidate column orders whose columns hold the gold columns' values."""
    width = len(tolerant)
    if width == 1:
        yield (0,)
        return
    gold_cols = [sorted((row[i] for row in gold), key=_sort_key) for i in range(width)]
    cand_cols = [
        sorted((row[j] for row in candidate), key=_sort_key) for j in range(width)
    ]
    fits = [
        [
            _values_equal(cand_cols[j], gold_cols[i], tolerant[i], rel_tol)
            for j in range(width)
        ]
        for i in range(width)
    ]
    yield from _assignments(fits, [], [False] * width)


def _assignments(
    fits: list[list[bool]], order: list[int], used: list[bool]
) -> Iterator[tuple[int, ...]]:
    """Column orders allowed by ``fits``, by backtracking (never all n! orders)."""
    i = len(order)
    if i == len(fits):
        yield tuple(order)
        return
    for j, ok in enumerate(fits[i]):
        if ok and not used[j]:
            used[j] = True
            order.append(j)
            yield from _assignments(fits, order, used)
            order.pop()
            used[j] = False


def _rows_equal(
    candidate: list[tuple[Value, ...]],
    gold: list[tuple[Value, ...]],
    tolerant: tuple[bool, ...],
    ordered: bool,
    rel_tol: float,
) -> bool:
    if not any(tolerant):
        return candidate == gold if ordered else Counter(candidate) == Counter(gold)
    if ordered:
        return all(
            _values_equal(c, g, t, rel_tol)
            for crow, grow in zip(candidate, gold, strict=True)
            for c, g, t in zip(crow, grow, tolerant, strict=True)
        )
    exact = [i for i, t in enumerate(tolerant) if not t]
    loose = [i for i, t in enumerate(tolerant) if t]
    groups: dict[tuple[Value, ...], list[list[tuple[Value, ...]]]] = defaultdict(
        lambda: [[], []]
    )
    for side, rows in enumerate((candidate, gold)):
        for row in rows:
            groups[tuple(row[i] for i in exact)][side].append(
                tuple(row[i] for i in loose)
            )
    for cand_part, gold_part in groups.values():
        if len(cand_part) != len(gold_part):
            return False
        cand_part.sort(key=lambda r: tuple(map(_sort_key, r)))
        gold_part.sort(key=lambda r: tuple(map(_sort_key, r)))
        for crow, grow in zip(cand_part, gold_part, strict=True):
            if not all(_close(c, g, rel_tol) for c, g in zip(crow, grow, strict=True)):
                return False
    return True


def _values_equal(a: Any, b: Any, tolerant: bool, rel_tol: float) -> bool:
    """Equality of two values, or of two equal-length sorted value lists."""
    if isinstance(a, list):
        return len(a) == len(b) and all(
            _values_equal(x, y, tolerant, rel_tol) for x, y in zip(a, b, strict=True)
        )
    return _close(a, b, rel_tol) if tolerant else a == b


def _close(a: Value, b: Value, rel_tol: float) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=rel_tol, abs_tol=ABS_TOL)
    return a == b


def _sort_key(value: Value) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    if isinstance(value, int | float):
        return (1, value)
    return (2, value)


def cell_f1(rows: Sequence[Sequence[Any]], gold_rows: Sequence[Row]) -> float:
    """F1 of the two results' cell values as multisets, ignoring layout.

    A coarse closeness for reward shaping: it rises as a query's result holds
    more of the gold values and fewer others.

    >>> cell_f1([[1, "a"]], [(1, "A")])
    1.0
    >>> round(cell_f1([[1], [2]], [(1,)]), 3)
    0.667
    """
    cand = Counter(_bag_key(v) for row in rows for v in row)
    gold = Counter(_bag_key(v) for row in gold_rows for v in row)
    common = sum((cand & gold).values())
    if not common:
        return 0.0
    precision = common / sum(cand.values())
    recall = common / sum(gold.values())
    return 2 * precision * recall / (precision + recall)


def _bag_key(value: Any) -> Value:
    norm = normalize(value)
    if isinstance(norm, float):
        return float(f"{norm:.3g}")  # 3 significant digits: close enough to count
    return norm


# --- Interim API (replaced by the verifier rewrite): a gold prepared once, a verdict.


@dataclass(frozen=True, slots=True)
class Gold:
    """A gold result ready to compare answers against."""

    rows: tuple[tuple[Any, ...], ...]
    order_matters: bool


def prepare_gold(rows: Sequence[Sequence[Any]], order_matters: bool) -> Gold:
    return Gold(tuple(tuple(r) for r in rows), order_matters)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether an answer matched, and how it was read (never the gold)."""

    correct: bool
    reading: str


def check_answer(text: str, gold: Gold) -> Verdict:
    try:
        correct = answer_matches(text, gold.rows, gold.order_matters)
    except (ValueError, OverflowError):
        correct = False
    return Verdict(correct, "")
