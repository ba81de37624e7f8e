"""Rendering stays readable and bounded."""

from sql_env.server.formatting import (
    MAX_CELL_CHARS,
    cell_text,
    render_schema,
    render_table,
    table_view,
)
from sql_env.server.question_bank import Column, ForeignKey, Table


def test_long_cells_are_cut() -> None:
    text = cell_text("x" * 500)
    assert len(text) == MAX_CELL_CHARS and text.endswith("…")


def test_blob_is_described_not_dumped() -> None:
    assert cell_text(b"\x00\x01") == "<blob 2 bytes>"


def test_pipes_and_newlines_cannot_break_the_table() -> None:
    text = render_table(table_view(["a"], [("x|y\nz",)]))
    assert text.splitlines()[1] == "x/y z"


def test_unknown_total_is_said() -> None:
    text = render_table(table_view(["n"], [(i,) for i in range(30)], more_rows=True))
    assert text.endswith("(showing 20 of more than 30 rows)")


def test_output_cap_counts_what_is_shown() -> None:
    text = render_table(table_view(["a"], [("y" * 70,)] * 20, max_chars=300))
    shown = len(text.splitlines()) - 2
    assert 0 < shown < 20 and text.endswith(f"(showing {shown} of 20 rows)")


def test_schema_names_keys() -> None:
    table = Table(
        "orders",
        (Column("id", "INTEGER"), Column("customer_id", ""), Column("x", "TEXT")),
        ("id",),
        (ForeignKey("customer_id", "customer", None),),
        3,
    )
    assert render_schema(table).splitlines() == [
        "Table orders (3 rows)",
        "Columns:",
        "- id INTEGER, primary key",
        "- customer_id ANY",
        "- x TEXT",
        "Foreign keys:",
        "- customer_id -> customer",
    ]


def test_a_huge_cell_is_cut_with_a_mark() -> None:
    text = cell_text("z" * 10_000_000)
    assert len(text) == MAX_CELL_CHARS and text.endswith("…")


def test_the_view_holds_exactly_what_the_text_shows() -> None:
    view = table_view(["a", "b"], [(i, "x" * 90) for i in range(25)])
    lines = render_table(view).splitlines()
    assert [" | ".join(row) for row in view.rows] == lines[1:-1]
    assert lines[-1] == f"({view.count_text()})" == "(showing 20 of 25 rows)"
