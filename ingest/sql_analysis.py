"""Static analysis of gold SQL: tables read, top-level ORDER BY, hardness.

Why this module exists: the question bank is built once per dataset (``make data``),
and three facts about each gold query are needed then, without running it:

- ``tables_used`` tells the oracle policy which tables to DESCRIBE;
- ``has_order_by`` tells the answer verifier whether row order is part of the answer;
- ``hardness`` gives Spider's official difficulty level (easy/medium/hard/extra), so
  curricula and reports can be split the way Spider papers split them (and a custom
  dataset without its own difficulty labels still gets levels).

sqlglot serves analysis only, never safety: what may run is decided by the sandbox
(SQLite's own authorizer on a read-only connection). A query sqlglot cannot parse may
still be perfectly valid SQLite, so no function here raises on bad SQL; each one has a
documented fallback instead.

All functions are pure (no database, clock or environment variables) and take a few
hundred microseconds per query; the parse is cached so calling all three on the same
query parses it once.
"""

import functools
import re
from collections.abc import Iterator
from typing import Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

DIALECT = "sqlite"
# Callers ask all three questions about one query in a row, so a small cache is enough
# to parse each query once, without keeping thousands of trees alive.
PARSE_CACHE_SIZE = 256

Hardness = Literal["easy", "medium", "hard", "extra"]
# A query sqlglot cannot parse is rated as hard as possible: overrating a rare odd
# query only moves it to the hardest bucket, where it cannot skew an easy curriculum.
UNPARSABLE_HARDNESS: Hardness = "extra"

# Spider's AGG_OPS; other aggregates (GROUP_CONCAT, TOTAL, ...) are invisible to it.
SPIDER_AGGREGATES = (exp.Max, exp.Min, exp.Count, exp.Sum, exp.Avg)

_ORDER_BY_RE = re.compile(r"\bORDER\s+BY\b", re.IGNORECASE)
_QUOTE_CLOSERS = {"'": "'", '"': '"', "`": "`", "[": "]"}


def tables_used(sql: str) -> list[str]:
    """Return the database tables a query reads, in order of first appearance.

    CTE names and subquery aliases are not tables and are left out; tables read inside
    CTE bodies and nested subqueries are included. Each table appears once (compared
    case-insensitively), spelled as it is first written in the query.

    Args:
        sql: One SQLite query.

    Returns:
        Table names, or ``[]`` when sqlglot cannot parse ``sql``: the oracle then
        describes no table rather than guessing from text.

    >>> tables_used("SELECT T1.name FROM Singer AS T1 JOIN concert AS T2 USING (id)")
    ['Singer', 'concert']
    >>> tables_used("WITH c AS (SELECT * FROM stadium) SELECT * FROM c")
    ['stadium']
    """
    tree = _parse(sql)
    if tree is None:
        return []
    cte_names = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    tables = [
        table
        for table in tree.find_all(exp.Table)
        if table.name and table.name.lower() not in cte_names
    ]
    names: dict[str, str] = {}
    for table in sorted(tables, key=_source_position):
        names.setdefault(table.name.lower(), table.name)
    return list(names.values())


def has_order_by(sql: str) -> bool:
    """Return whether the outermost query's row order is set by an ORDER BY.

    Only the top-level SELECT's ORDER BY, or the one closing a top-level UNION,
    INTERSECT or EXCEPT, counts. An ORDER BY inside a subquery (typically with
    ``LIMIT 1``) picks rows but does not order the result, so it does not count.

    Args:
        sql: One SQLite query.

    Returns:
        True when row order is part of the answer. When sqlglot cannot parse ``sql``,
        looks for ``ORDER BY`` outside all parentheses, string literals and quoted
        identifiers instead, which is where a top-level ORDER BY must be.

    >>> has_order_by("SELECT name FROM singer ORDER BY age DESC")
    True
    >>> has_order_by("SELECT id FROM t WHERE x = (SELECT x FROM t ORDER BY x LIMIT 1)")
    False
    """
    tree = _parse(sql)
    if tree is None:
        return bool(_ORDER_BY_RE.search(_top_level_text(sql)))
    node: exp.Expression = tree
    while True:
        if node.args.get("order"):
            return True
        if isinstance(node, exp.Subquery):
            node = node.this
        elif isinstance(node, exp.SetOperation):
            # sqlglot moves a trailing ORDER BY onto the set operation; older versions
            # may leave it on an unparenthesised last operand, so look there too.
            node = node.expression
            if isinstance(node, exp.Subquery):
                return False
        else:
            return False


def hardness(sql: str) -> Hardness:
    """Return Spider's official hardness level of a query.

    Follows ``Evaluator.eval_hardness`` in Spider's ``evaluation.py``: it counts
    components of the outermost SELECT (for a set operation, of its first operand) and
    applies Spider's thresholds. The counts are taken from a sqlglot AST instead of
    Spider's parsed ``sql`` dict, including Spider's quirks (see ``_count_others``).

    Args:
        sql: One SQLite query.

    Returns:
        ``"easy"``, ``"medium"``, ``"hard"`` or ``"extra"``; ``UNPARSABLE_HARDNESS``
        when sqlglot cannot parse ``sql``.

    >>> hardness("SELECT count(*) FROM singer")
    'easy'
    >>> hardness("SELECT name FROM singer WHERE age > (SELECT avg(age) FROM singer)")
    'hard'
    """
    tree = _parse(sql)
    if tree is None:
        return UNPARSABLE_HARDNESS
    select, has_set_operation = _first_select(tree)
    if select is None:
        return UNPARSABLE_HARDNESS
    return _hardness_level(
        component1=_count_component1(select),
        component2=_count_component2(select) + int(has_set_operation),
        others=_count_others(select),
    )


@functools.lru_cache(maxsize=PARSE_CACHE_SIZE)
def _parse(sql: str) -> exp.Query | None:
    """Parse one query, or return None for anything that is not a single query.

    The cached tree is shared between callers, so nothing here may modify it.
    """
    try:
        tree = sqlglot.parse_one(sql, read=DIALECT)
    except (SqlglotError, RecursionError):
        return None
    return tree if isinstance(tree, exp.Query) else None


def _source_position(table: exp.Table) -> int:
    """Return where a table's name starts in the SQL text.

    The tree's own order is not the written order (a CTE body may come after the
    main FROM), but sqlglot records each identifier token's offset in ``meta``.
    """
    return table.this.meta.get("start", 0) if table.this else 0


def _top_level_text(sql: str) -> str:
    """Return the SQL outside parentheses, quotes and comments (regex fallback)."""
    kept: list[str] = []
    depth = 0
    i = 0
    while i < len(sql):
        char = sql[i]
        if char in _QUOTE_CLOSERS:
            end = sql.find(_QUOTE_CLOSERS[char], i + 1)
            i = len(sql) if end == -1 else end + 1
            kept.append(" ")
            continue
        if sql.startswith("--", i):
            end = sql.find("\n", i)
            i = len(sql) if end == -1 else end
            continue
        if sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = len(sql) if end == -1 else end + 2
            kept.append(" ")
            continue
        if char == "(":
            depth += 1
            kept.append(" ")
        elif char == ")":
            depth = max(depth - 1, 0)
            kept.append(" ")
        elif depth == 0:
            kept.append(char)
        i += 1
    return "".join(kept)


def _first_select(tree: exp.Query) -> tuple[exp.Select | None, bool]:
    """Return the SELECT Spider treats as the top level, and whether a set op follows.

    Spider parses ``A UNION B UNION C`` as A with a nested ``union`` (B, which nests C),
    so the top level is the leftmost operand and the set operation counts once.
    """
    node: exp.Expression = tree
    has_set_operation = False
    while True:
        if isinstance(node, exp.Subquery):
            node = node.this
        elif isinstance(node, exp.SetOperation):
            has_set_operation = True
            node = node.this
        elif isinstance(node, exp.Select):
            return node, has_set_operation
        else:
            return None, has_set_operation


def _hardness_level(component1: int, component2: int, others: int) -> Hardness:
    """Apply the thresholds of Spider's ``Evaluator.eval_hardness``."""
    if component1 <= 1 and others == 0 and component2 == 0:
        return "easy"
    if component2 == 0 and (
        (others <= 2 and component1 <= 1) or (component1 <= 2 and others < 2)
    ):
        return "medium"
    if (
        (component2 == 0 and others > 2 and component1 <= 2)
        or (component2 == 0 and 2 < component1 <= 3 and others <= 2)
        or (component2 <= 1 and component1 <= 1 and others == 0)
    ):
        return "hard"
    return "extra"


def _count_component1(select: exp.Select) -> int:
    """Count WHERE, GROUP BY, ORDER BY, LIMIT, each JOIN, each OR and each LIKE."""
    count = sum(
        1 for clause in ("where", "group", "order", "limit") if select.args.get(clause)
    )
    # Spider counts table units minus one; sqlglot keeps every table after the first
    # (comma joins included) in ``joins``.
    if _from_clause(select) is not None:
        count += len(select.args.get("joins") or [])
    for condition in _condition_clauses(select):
        leaves, or_count = _split_condition(condition)
        count += or_count
        count += sum(1 for leaf in leaves if isinstance(_unnegated(leaf), exp.Like))
    return count


def _count_component2(select: exp.Select) -> int:
    """Count subqueries used as values in ON, WHERE and HAVING conditions.

    Set operations are added by the caller. Subqueries in FROM are table units to
    Spider, not nested SQL, so they are not counted here.
    """
    count = 0
    for condition in _condition_clauses(select):
        for leaf in _split_condition(condition)[0]:
            count += sum(
                1
                for node in _walk_scope(leaf)
                if node is not leaf and isinstance(node, exp.Query)
            )
    return count


def _count_others(select: exp.Select) -> int:
    """Count "others": >1 aggregate, >1 select column, >1 WHERE condition, >1 GROUP BY.

    Reproduces how Spider's ``count_agg`` reads its condition tuples: in WHERE and
    HAVING the first field it tests is the NOT flag, so a negated condition (NOT IN,
    NOT LIKE, NOT BETWEEN) counts as an aggregate and a real aggregate does not; in
    HAVING each AND/OR connector counts too.
    """
    aggregates = sum(1 for column in select.expressions if _is_aggregate(column))
    where = select.args.get("where")
    where_leaves = _split_condition(where.this)[0] if where else []
    aggregates += sum(1 for leaf in where_leaves if _is_negated(leaf))
    group = select.args.get("group")
    group_columns = group.expressions if group else []
    aggregates += sum(1 for column in group_columns if _is_aggregate(column))
    order = select.args.get("order")
    for ordered in order.expressions if order else []:
        # Spider's order val_unit holds at most two column units.
        found = sum(
            1 for node in _walk_scope(ordered) if isinstance(node, SPIDER_AGGREGATES)
        )
        aggregates += min(found, 2)
    having = select.args.get("having")
    if having:
        having_leaves = _split_condition(having.this)[0]
        aggregates += len(having_leaves) - 1
        aggregates += sum(1 for leaf in having_leaves if _is_negated(leaf))
    return sum(
        (
            aggregates > 1,
            len(select.expressions) > 1,
            len(where_leaves) > 1,
            len(group_columns) > 1,
        )
    )


def _from_clause(select: exp.Select) -> exp.From | None:
    """Return the FROM clause (key ``from_`` in recent sqlglot, ``from`` before)."""
    return select.args.get("from_") or select.args.get("from")


def _condition_clauses(select: exp.Select) -> Iterator[exp.Expression]:
    """Yield the JOIN ON, WHERE and HAVING conditions: Spider's condition lists."""
    for join in select.args.get("joins") or []:
        if join.args.get("on"):
            yield join.args["on"]
    for clause in ("where", "having"):
        if select.args.get(clause):
            yield select.args[clause].this


def _split_condition(condition: exp.Expression) -> tuple[list[exp.Expression], int]:
    """Split a condition into Spider's flat condition units and count its ORs."""
    leaves: list[exp.Expression] = []
    or_count = 0
    stack = [condition]
    while stack:
        node = stack.pop()
        if isinstance(node, exp.Paren):
            stack.append(node.this)
        elif isinstance(node, exp.And | exp.Or):
            or_count += isinstance(node, exp.Or)
            stack.extend((node.expression, node.this))
        else:
            leaves.append(node)
    return leaves, or_count


def _walk_scope(node: exp.Expression) -> Iterator[exp.Expression]:
    """Yield ``node`` and its descendants without entering nested queries.

    A nested query itself is yielded, so callers can count it, but not its contents.
    """
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        if current is node or not isinstance(current, exp.Query):
            stack.extend(current.iter_expressions(reverse=True))


def _unnegated(leaf: exp.Expression) -> exp.Expression:
    """Strip a NOT, so ``x NOT LIKE y`` is seen as a LIKE."""
    return leaf.this if isinstance(leaf, exp.Not) else leaf


def _is_negated(leaf: exp.Expression) -> bool:
    """Tell whether a condition is negated (``NOT IN``, ``NOT LIKE``, ``NOT BETWEEN``).

    sqlglot writes a negated LIKE either as ``Not(Like)`` or as ``Like(negate=True)``,
    depending on its version.
    """
    return isinstance(leaf, exp.Not) or bool(leaf.args.get("negate"))


def _is_aggregate(column: exp.Expression) -> bool:
    """Tell whether Spider would give a select column an aggregate id."""
    return isinstance(column.unalias(), SPIDER_AGGREGATES)
