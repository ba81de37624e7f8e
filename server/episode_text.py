"""What an episode tells the agent besides results: its instructions and its schema.

The reset observation carries a short contract in ``instructions`` (the tools, the
answer format of this episode's settings, the budget), so an agent that never saw
SQLEnv's training prompt can play; and, when the episode gives the schema, the
database as CREATE TABLE statements with keys, as text-to-SQL papers put it in the
prompt. Pure functions of their arguments.
"""

from collections.abc import Sequence

from sql_env.models import AnswerMode, SchemaMode
from sql_env.server.question_bank import Table

# SQLite's keywords (sqlite.org/lang_keywords.html): an identifier spelled like
# one is quoted in the schema, as a query would have to quote it.
SQLITE_KEYWORDS = frozenset(
    """
    ABORT ACTION ADD AFTER ALL ALTER ALWAYS ANALYZE AND AS ASC ATTACH AUTOINCREMENT
    BEFORE BEGIN BETWEEN BY CASCADE CASE CAST CHECK COLLATE COLUMN COMMIT CONFLICT
    CONSTRAINT CREATE CROSS CURRENT CURRENT_DATE CURRENT_TIME CURRENT_TIMESTAMP
    DATABASE DEFAULT DEFERRABLE DEFERRED DELETE DESC DETACH DISTINCT DO DROP EACH
    ELSE END ESCAPE EXCEPT EXCLUDE EXCLUSIVE EXISTS EXPLAIN FAIL FILTER FIRST
    FOLLOWING FOR FOREIGN FROM FULL GENERATED GLOB GROUP GROUPS HAVING IF IGNORE
    IMMEDIATE IN INDEX INDEXED INITIALLY INNER INSERT INSTEAD INTERSECT INTO IS
    ISNULL JOIN KEY LAST LEFT LIKE LIMIT MATCH MATERIALIZED NATURAL NO NOT NOTHING
    NOTNULL NULL NULLS OF OFFSET ON OR ORDER OTHERS OUTER OVER PARTITION PLAN
    PRAGMA PRECEDING PRIMARY QUERY RAISE RANGE RECURSIVE REFERENCES REGEXP REINDEX
    RELEASE RENAME REPLACE RESTRICT RETURNING RIGHT ROLLBACK ROW ROWS SAVEPOINT
    SELECT SET TABLE TEMP TEMPORARY THEN TIES TO TRANSACTION TRIGGER UNBOUNDED
    UNION UNIQUE UPDATE USING VACUUM VALUES VIEW VIRTUAL WHEN WHERE WINDOW WITH
    WITHOUT
    """.split()
)
RULE_NAMES = {
    "spider": "the Spider test-suite rule: the same rows in any order (in order "
    "when the question's gold query orders them), columns in any order",
    "bird": "the BIRD rule: the same set of rows, columns in the gold order",
}


def render_ddl(tables: Sequence[Table]) -> str:
    """The schema as CREATE TABLE statements with keys.

    >>> from sql_env.server.question_bank import Column, ForeignKey, Table
    >>> print(render_ddl([Table("pet", (Column("id", "INT"), Column("order", "")),
    ...     ("id",), (ForeignKey("order", "person", "id"),), 3)]))
    CREATE TABLE pet (
      id INT,
      "order",
      PRIMARY KEY (id),
      FOREIGN KEY ("order") REFERENCES person (id)
    );
    """
    statements = []
    for table in tables:
        lines = [f"  {_ident(c.name)} {c.type}".rstrip() for c in table.columns]
        if table.primary_key:
            keys = ", ".join(_ident(k) for k in table.primary_key)
            lines.append(f"  PRIMARY KEY ({keys})")
        for fk in table.foreign_keys:
            target = _ident(fk.ref_table)
            if fk.ref_column:
                target += f" ({_ident(fk.ref_column)})"
            lines.append(f"  FOREIGN KEY ({_ident(fk.column)}) REFERENCES {target}")
        body = ",\n".join(lines)
        statements.append(f"CREATE TABLE {_ident(table.name)} (\n{body}\n);")
    return "\n\n".join(statements)


def _ident(name: str) -> str:
    """An identifier, quoted only where a query would have to quote it."""
    if name.isidentifier() and name.isascii() and name.upper() not in SQLITE_KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


def instructions(
    *,
    schema_mode: SchemaMode,
    answer_mode: AnswerMode,
    rule: str,
    max_steps: int,
    evidence: bool,
) -> str:
    """The contract of one episode's settings, in a few sentences.

    >>> text = instructions(schema_mode="hidden", answer_mode="sql", rule="bird",
    ...                     max_steps=15, evidence=False)
    >>> "one SELECT statement" in text and "15 steps" in text
    True
    """
    parts = [
        "Answer the question about the SQLite database by calling tools. "
        "DESCRIBE(table) shows a table's columns, types, keys and row count. "
        "SAMPLE(table) shows its first rows. QUERY(sql) runs one read-only "
        "SELECT and shows up to 20 rows of its result.",
    ]
    if answer_mode == "value":
        parts.append(
            "ANSWER(value) ends the episode with the answer itself: JSON (a value, "
            'a list, or a list of rows such as [["Paris", 2], ["Rome", 1]]) or one '
            "value per line; it is compared with the gold query's result (rows in "
            "any order unless the question asks for an order, columns in any order, "
            "numbers to the precision you write them)."
        )
    else:
        parts.append(
            "ANSWER(sql) ends the episode with one SELECT statement whose result "
            "answers the question; it is run and its rows compared with the gold "
            f"query's rows by {RULE_NAMES.get(rule, RULE_NAMES['spider'])}. A "
            "statement that fails scores 0."
        )
    if schema_mode == "given":
        parts.append("The schema is given below as CREATE TABLE statements.")
    if evidence:
        parts.append("The evidence given with the question is a hint to use.")
    parts.append(
        f"You have {max_steps} steps; every call uses one, and errors cost a step "
        "but do not end the episode."
    )
    return " ".join(parts)
