"""The official execution-accuracy rules of Spider and BIRD, as pure functions.

For the "answer by SQL" mode: the agent's final SELECT runs in the sandbox and
its rows are compared with the gold query's rows by the rule of the dataset's
own evaluator, so a score here is the score the paper would report.

- Spider: ``result_eq(result1, result2, order_matters)`` of the test-suite
  evaluator (github.com/taoyds/test-suite-sql-eval, ``exec_eval.py``). Rows
  are a multiset (a list when ``order_matters``); some permutation of the
  columns must make the two results equal; values compare by Python
  equality (``1 == 1.0``, ``'a' != 'A'``, no tolerance). A cheap necessary
  test comes first, as in the original: each row with its values sorted by
  ``str(value) + str(type(value))`` must appear in both results.
- BIRD: ``set(predicted_res) == set(ground_truth_res)`` of the official
  evaluation (github.com/AlibabaResearch/DAMO-ConvAI, ``bird/llm/src/
  evaluation.py``; the same in github.com/bird-bench/mini_dev,
  ``evaluation/evaluation_ex.py``): rows as a set, so order and repeats are
  ignored, and the columns must come in the gold order.

Where the originals raise (rows of unequal width, unhashable values, integers
too long for ``str``), these return False. The original Spider code tries every
column order its row sample allows, which for many columns holding the same
values is up to width**width tuples (hours); here the search extends a column
order only while the projected rows still agree as multisets, treats identical
columns as one, and stops after ``MAX_SPIDER_WORK`` row steps, answering False.
Within that budget the answer is the original's; the budget is reached only by
results whose every partial column projection agrees while the whole does not.
"""

from collections import Counter
from collections.abc import Sequence
from itertools import chain
from typing import Any

from sql_env.server.result_matching import Budget, OutOfWork

MAX_SPIDER_WORK = 2_000_000  # row steps of the column-order search

Rows = list[tuple[Any, ...]]


def spider_execution_match(
    predicted: Sequence[Sequence[Any]],
    gold: Sequence[Sequence[Any]],
    order_matters: bool,
) -> bool:
    """Spider test-suite execution match of two results (rows of values).

    >>> spider_execution_match([("a", 1), ("b", 2)], [(2, "b"), (1, "a")], False)
    True
    >>> spider_execution_match([(1,), (2,)], [(2,), (1,)], True)
    False
    >>> spider_execution_match([(1.0,)], [(1,)], False)  # Python equality
    True
    >>> spider_execution_match([("A",)], [("a",)], False)
    False
    """
    gold_rows = [tuple(row) for row in gold]
    predicted_rows = [tuple(row) for row in predicted]
    if not gold_rows and not predicted_rows:
        return True
    if len(gold_rows) != len(predicted_rows):
        return False
    width = len(gold_rows[0])
    if len(predicted_rows[0]) != width:
        return False
    if not _hashable(gold_rows) or not _hashable(predicted_rows):
        return False
    if not _same_sorted_rows(gold_rows, predicted_rows, order_matters):
        return False
    if width == 1:  # the original compares whole rows here, whatever their width
        if order_matters:
            return gold_rows == predicted_rows
        return Counter(gold_rows) == Counter(predicted_rows)
    if any(len(row) != width for row in chain(gold_rows, predicted_rows)):
        return False
    if order_matters:
        return Counter(zip(*gold_rows, strict=True)) == Counter(
            zip(*predicted_rows, strict=True)
        )
    try:
        return _some_column_order_matches(gold_rows, predicted_rows, width)
    except OutOfWork:
        return False


def bird_execution_match(
    predicted: Sequence[Sequence[Any]], gold: Sequence[Sequence[Any]]
) -> bool:
    """BIRD execution match: the two results hold the same set of rows.

    >>> bird_execution_match([(1, "a"), (1, "a")], [(1, "a")])
    True
    >>> bird_execution_match([("a", 1)], [(1, "a")])
    False
    """
    predicted_rows = [tuple(row) for row in predicted]
    gold_rows = [tuple(row) for row in gold]
    if not _hashable(predicted_rows) or not _hashable(gold_rows):
        return False
    return set(predicted_rows) == set(gold_rows)


def _hashable(rows: Rows) -> bool:
    try:
        for row in rows:
            hash(row)
    except TypeError:  # a list, dict or set among the values
        return False
    return True


def _same_sorted_rows(gold: Rows, predicted: Rows, order_matters: bool) -> bool:
    """The original's quick rejection: rows with their values sorted by text."""
    try:
        gold_sorted = [_sorted_values(row) for row in gold]
        predicted_sorted = [_sorted_values(row) for row in predicted]
    except ValueError:  # str() of an integer past Python's digit limit
        return False
    if order_matters:
        return gold_sorted == predicted_sorted
    return set(gold_sorted) == set(predicted_sorted)


def _sorted_values(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(sorted(row, key=lambda value: str(value) + str(type(value))))


def _some_column_order_matches(gold: Rows, predicted: Rows, width: int) -> bool:
    """Whether some column permutation of ``predicted`` equals ``gold`` as a multiset.

    Depth-first over gold columns. A prefix of the order survives only if the
    two results, projected on the columns placed so far, are equal multisets;
    a projected row is an id given to (id of its shorter prefix, value), so
    each step costs one pass over the rows. Columns identical in every row
    are interchangeable and are placed once.
    """
    n = len(gold)
    gold_columns = [tuple(row[k] for row in gold) for k in range(width)]
    predicted_columns = [tuple(row[j] for row in predicted) for j in range(width)]
    signature = {}
    for j, column in enumerate(predicted_columns):
        signature.setdefault(_multiset(column), []).append(j)
    first_identical: dict[tuple[Any, ...], int] = {}
    predicted_class = [
        first_identical.setdefault(column, j)
        for j, column in enumerate(predicted_columns)
    ]
    gold_first: dict[tuple[Any, ...], int] = {}
    gold_class = [gold_first.setdefault(c, k) for k, c in enumerate(gold_columns)]
    previous_same, last = [], {}
    for k, c in enumerate(gold_class):
        previous_same.append(last.get(c, -1))
        last[c] = k

    ids: dict[tuple[int, Any], int] = {}
    gold_ids = [[0] * n]
    gold_counts = []
    for k in range(width):
        layer = [
            ids.setdefault((prefix, value), len(ids))
            for prefix, value in zip(gold_ids[-1], gold_columns[k], strict=True)
        ]
        gold_ids.append(layer)
        gold_counts.append(Counter(layer))

    fitting = []
    for k in range(width):
        same = signature.get(_multiset(gold_columns[k]), [])
        classes = sorted({predicted_class[j] for j in same})
        fitting.append(classes)
    remaining = Counter(predicted_class)
    budget = Budget(MAX_SPIDER_WORK)

    def options(depth: int, assign: list[int]) -> list[int]:
        previous = previous_same[depth]
        floor = assign[previous] if previous >= 0 else -1
        own = predicted_class[depth]
        ordered = sorted(fitting[depth], key=lambda c: (c != own, c))
        return [c for c in ordered if remaining[c] > 0 and c >= floor]

    assign: list[int] = []
    predicted_ids = [[0] * n]
    stack = [options(0, assign)]
    while stack:
        if not stack[-1]:
            stack.pop()
            if assign:
                remaining[assign.pop()] += 1
                predicted_ids.pop()
            continue
        choice = stack[-1].pop(0)
        depth = len(assign)
        budget.charge(n)
        layer = _extend(predicted_ids[-1], predicted_columns[choice], ids)
        if layer is None or Counter(layer) != gold_counts[depth]:
            continue
        if depth + 1 == width:
            return True
        assign.append(choice)
        remaining[choice] -= 1
        predicted_ids.append(layer)
        stack.append(options(depth + 1, assign))
    return False


def _extend(
    prefix_ids: list[int], column: tuple[Any, ...], ids: dict[tuple[int, Any], int]
) -> list[int] | None:
    """Ids of the longer projected rows, or None if one never occurs in gold."""
    layer = []
    for prefix, value in zip(prefix_ids, column, strict=True):
        found = ids.get((prefix, value))
        if found is None:
            return None
        layer.append(found)
    return layer


def _multiset(column: tuple[Any, ...]) -> frozenset[tuple[Any, int]]:
    return frozenset(Counter(column).items())
