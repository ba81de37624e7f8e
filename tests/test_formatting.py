"""Rendering stays readable and bounded."""

from sql_env.server.formatting import (
    MAX_CELL_CHARS,
    cell_text,
    render_schema,
    render_table,
)
from sql_env.server.question_bank import Column, ForeignKey, Table


def test_long_cells_are_cut() -> None:
    text = cell_text("x" * 500)
    assert len(text) == MAX_CELL_CHARS and text.endswith("…")


def test_blob_is_described_not_dumped() -> None:
    assert cell_text(b"\x00\x01") == "<blob 2 bytes>"


def test_pipes_and_newlines_cannot_break_the_table() -> None:
    assert render_table(["a"], [("x|y\nz",)]).splitlines()[1] == "x/y z"


def test_unknown_total_is_said() -> None:
    text = render_table(["n"], [(i,) for i in range(30)], more_rows=True)
    assert text.endswith("(showing 20 of more than 30 rows)")


def test_output_cap_counts_what_is_shown() -> None:
    text = render_table(["a"], [("y" * 70,)] * 20, max_chars=300)
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
