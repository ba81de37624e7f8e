"""Text an LLM reads well: results as compact pipe tables, schemas as lists.

Pure functions of values; the caps keep one observation within a few thousand
characters however wide or long the result is.
"""

from collections.abc import Sequence
from typing import Any

from sql_env.server.question_bank import Table

MAX_SHOWN_ROWS = 20
MAX_CELL_CHARS = 80
MAX_OUTPUT_CHARS = 4_000


def cell_text(value: Any, max_chars: int = MAX_CELL_CHARS) -> str:
    """One cell: NULL spelled out, floats without noise, long text cut.

    >>> cell_text(None), cell_text(2.5), cell_text(1/3), cell_text("a|b")
    ('NULL', '2.5', '0.333333333333', 'a/b')
    """
    if value is None:
        text = "NULL"
    elif isinstance(value, float):
        text = f"{value:.12g}"
    elif isinstance(value, bytes):
        text = f"<blob {len(value)} bytes>"
    else:
        text = str(value).replace("\n", " ").replace("|", "/")
    if len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return text


def render_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    more_rows: bool = False,
    total: int | None = None,
    max_rows: int = MAX_SHOWN_ROWS,
    max_chars: int = MAX_OUTPUT_CHARS,
) -> str:
    """A header line, one line per row, and a line saying how many rows there are.

    ``total`` is the true row count when ``rows`` is a known prefix (SAMPLE);
    ``more_rows`` says the count is unknown beyond ``len(rows)`` (QUERY).

    >>> print(render_table(["name", "age"], [("Joe", 52), ("Ann", None)]))
    name | age
    Joe | 52
    Ann | NULL
    (2 rows)
    """
    lines = [" | ".join(cell_text(c) for c in columns)]
    used = len(lines[0])
    shown = 0
    for row in rows[:max_rows]:
        line = " | ".join(cell_text(v) for v in row)
        if used + len(line) + 1 > max_chars:
            break
        lines.append(line)
        used += len(line) + 1
        shown += 1
    count = len(rows) if total is None else total
    if shown == count and not more_rows:
        lines.append(f"({count} row{'' if count == 1 else 's'})")
    else:
        of = f"more than {count:,}" if more_rows else f"{count:,}"
        lines.append(f"(showing {shown} of {of} rows)")
    return "\n".join(lines)


def render_schema(table: Table) -> str:
    """DESCRIBE's answer: columns with types and keys, then the row count."""
    primary = set(table.primary_key)
    lines = [f"Table {table.name} ({table.row_count:,} rows)", "Columns:"]
    for column in table.columns:
        key = ", primary key" if column.name in primary else ""
        lines.append(f"- {column.name} {column.type or 'ANY'}{key}".rstrip())
    if table.foreign_keys:
        lines.append("Foreign keys:")
        for fk in table.foreign_keys:
            target = (
                f"{fk.ref_table}.{fk.ref_column}" if fk.ref_column else fk.ref_table
            )
            lines.append(f"- {fk.column} -> {target}")
    return "\n".join(lines)
