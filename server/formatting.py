"""What a result looks like: a bounded table view, and the text an LLM reads of it.

Pure functions of values. ``table_view`` applies every cap (rows shown, cell
length, total characters) and returns the structure of exactly what is shown;
``render_table`` writes that structure as a compact pipe table. The SQL workers
build the view next to the data, so only shown cells ever cross a process
boundary; the web page and the episode history read the structure, never the text.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sql_env.server.question_bank import Table

MAX_SHOWN_ROWS = 20
MAX_CELL_CHARS = 80
MAX_OUTPUT_CHARS = 4_000


@dataclass(frozen=True, slots=True)
class TableView:
    """The shown part of a result: header, cell texts, and how many rows there are.

    ``row_count`` is the number of rows known to exist (the fetched rows, or a
    table's size for SAMPLE); ``more_rows`` says there were more than that, uncounted.
    """

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    row_count: int
    more_rows: bool = False

    @property
    def complete(self) -> bool:
        """Every row of the result is shown."""
        return len(self.rows) == self.row_count and not self.more_rows

    def count_text(self) -> str:
        """The closing line's words: "2 rows" or "showing 20 of 1,234 rows".

        >>> TableView(("n",), (("1",),), 1).count_text()
        '1 row'
        >>> TableView(("n",), (("1",),), 30, more_rows=True).count_text()
        'showing 1 of more than 30 rows'
        """
        count = self.row_count
        if self.complete:
            return f"{count} row{'' if count == 1 else 's'}"
        of = f"more than {count:,}" if self.more_rows else f"{count:,}"
        return f"showing {len(self.rows)} of {of} rows"


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
        text = str(value)
        if len(text) > max_chars:
            text = text[: max_chars + 1]  # cut before replacing: it may be huge
        text = text.replace("\n", " ").replace("|", "/")
    if len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return text


def table_view(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    row_count: int | None = None,
    more_rows: bool = False,
    max_rows: int = MAX_SHOWN_ROWS,
    max_chars: int = MAX_OUTPUT_CHARS,
) -> TableView:
    """The view of a result: at most ``max_rows`` rows and ``max_chars`` of text.

    Args:
        columns: Column names.
        rows: The result rows, or a prefix of them.
        row_count: How many rows exist, when ``rows`` is a known prefix (SAMPLE);
            default ``len(rows)``.
        more_rows: Rows exist beyond ``len(rows)`` and were not counted (QUERY).

    >>> view = table_view(["n"], [(i,) for i in range(30)])
    >>> len(view.rows), view.row_count, view.count_text()
    (20, 30, 'showing 20 of 30 rows')
    """
    header = tuple(cell_text(c) for c in columns)
    used = len(" | ".join(header))
    shown: list[tuple[str, ...]] = []
    for row in rows[:max_rows]:
        cells = tuple(cell_text(v) for v in row)
        size = len(" | ".join(cells)) + 1
        if used + size > max_chars:
            break
        shown.append(cells)
        used += size
    total = len(rows) if row_count is None else row_count
    return TableView(header, tuple(shown), total, more_rows)


def render_table(view: TableView) -> str:
    """A header line, one line per shown row, and a line saying how many rows exist.

    >>> print(render_table(table_view(["name", "age"], [("Joe", 52), ("Ann", None)])))
    name | age
    Joe | 52
    Ann | NULL
    (2 rows)
    """
    lines = [" | ".join(view.columns), *(" | ".join(row) for row in view.rows)]
    lines.append(f"({view.count_text()})")
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
            lines.append(f"- {fk.column} -> {foreign_key_target(fk)}")
    return "\n".join(lines)


def foreign_key_target(fk: Any) -> str:
    """Where a foreign key points: ``table.column``, or ``table`` alone."""
    return f"{fk.ref_table}.{fk.ref_column}" if fk.ref_column else fk.ref_table
