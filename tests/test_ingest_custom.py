"""Your own databases: questions.jsonl or .csv beside SQLite files, built by the
real command (`make data DATASET=custom SOURCE=...`); every bad line reported."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from sql_env.ingest.build import build
from sql_env.ingest.sources import SourceError
from sql_env.server.question_bank import database_path, list_datasets, load_bank
from tests.source_fixtures import (
    CUSTOM_QUESTIONS,
    make_custom_source,
    make_database,
    write_questions,
)

ROOT = Path(__file__).resolve().parents[1]


def make(*args: str) -> subprocess.CompletedProcess[str]:
    """`make data ...` as a user types it (the venv is not re-made here)."""
    return subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.runtime", "data", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def bank_view(data_dir: Path, dataset: str = "custom") -> list[tuple]:
    bank = load_bank(data_dir, dataset)
    return [
        (q.id, q.split, q.db_id, q.question, q.gold_sql, q.evidence, q.difficulty,
         q.source_id, q.excluded, q.gold_rows)
        for split in bank.splits
        for q in bank.all(split)
    ]  # fmt: skip


@pytest.fixture(scope="module")
def custom_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = make_custom_source(tmp_path_factory.mktemp("my_data"))
    data_dir = tmp_path_factory.mktemp("data")
    done = make("DATASET=custom", f"SOURCE={source}", f"DATA_DIR={data_dir}")
    assert done.returncode == 0, done.stderr
    assert "train: 3 questions, 3 eligible" in done.stdout
    return data_dir


def test_make_data_builds_the_users_questions(custom_data: Path) -> None:
    bank = load_bank(custom_data, "custom")
    assert bank.splits == ("train", "dev")  # first-seen order; default train
    assert [q.id for q in bank.all("train")] == [f"custom/train/{i}" for i in range(3)]
    assert [q.id for q in bank.all("dev")] == [f"custom/dev/{i}" for i in range(3)]
    out_of_stock = bank.get("custom/train/1")
    assert out_of_stock.gold_rows == (("lamp",),)
    assert out_of_stock.evidence == "out of stock means stock = 0"
    assert out_of_stock.source_id == "q-2" and out_of_stock.difficulty == "L2"
    roses = bank.get("custom/dev/0")
    assert roses.gold_rows == (("apple",), ("rose",)) and roses.order_matters
    assert roses.source_id == "3"  # an integer id, kept as text
    assert bank.get("custom/dev/1").source_id is None
    assert bank.get("custom/train/2").difficulty == ""  # no difficulty on that line


def test_levels_are_the_files_own_in_first_seen_order(custom_data: Path) -> None:
    bank = load_bank(custom_data, "custom")
    assert bank.levels == ("L1", "L2", "L3")
    assert [q.id for q in bank.eligible("dev", difficulty="L1")] == ["custom/dev/1"]


def test_a_failing_gold_is_excluded_with_its_reason(custom_data: Path) -> None:
    bank = load_bank(custom_data, "custom")
    broken = bank.get("custom/dev/2")
    assert broken.excluded == "gold_error: SQL error: no such column: colour"
    assert broken not in bank.eligible("dev")
    report = json.loads((custom_data / "custom" / "report.json").read_text())
    assert report["splits"]["dev"]["excluded"] == {"gold_error": 1}
    assert report["excluded"][0]["source_id"] == "q-6"


def test_both_database_layouts_are_installed_read_only(custom_data: Path) -> None:
    for db_id in ("shop", "plants"):
        path = database_path(custom_data, "custom", db_id)
        assert path.is_file() and not path.stat().st_mode & 0o222


def test_csv_builds_the_same_bank_as_jsonl(custom_data: Path, tmp_path: Path) -> None:
    source = make_custom_source(tmp_path / "src", fmt="csv")
    build("custom", [str(source)], tmp_path / "data", workers=1)
    assert bank_view(tmp_path / "data") == bank_view(custom_data)


def test_without_difficulty_levels_are_spiders_hardness(tmp_path: Path) -> None:
    records = [
        {k: v for k, v in r.items() if k != "difficulty"} for r in CUSTOM_QUESTIONS
    ]
    source = make_custom_source(tmp_path / "src")
    write_questions(source, records, "jsonl")
    report = build("custom", [str(source)], tmp_path / "data", workers=1).report
    bank = load_bank(tmp_path / "data", "custom")
    assert bank.levels == ("easy", "medium", "hard", "extra")
    assert bank.get("custom/train/0").difficulty == "easy"  # SELECT count(*) FROM t
    assert any("Spider's hardness" in note for note in report["notes"])


def test_every_bad_line_is_reported_with_its_number(tmp_path: Path) -> None:
    source = make_custom_source(tmp_path / "src")
    ok = {
        "question": "How many?",
        "sql": "SELECT count(*) FROM product",
        "db_id": "shop",
    }
    lines = [
        json.dumps(ok | {"id": "a"}),  # 1: fine
        '{"question": "broken", ',  # 2
        json.dumps({"question": "No SQL?", "db_id": "shop"}),  # 3
        json.dumps(ok | {"question": "   "}),  # 4
        json.dumps(ok | {"difficulty": 3}),  # 5
        json.dumps(ok | {"db_id": "shopp"}),  # 6
        json.dumps(ok | {"id": "a"}),  # 7
        "",  # 8: blank lines are skipped
        json.dumps(ok | {"split": "dev/1"}),  # 9
        json.dumps(["a", "list"]),  # 10
        json.dumps(ok | {"evidence": None}),  # 11: null is an absent field
    ]
    (source / "questions.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError) as error:
        build("custom", [str(source)], tmp_path / "data")
    assert [p.split(": ", 1)[0] for p in error.value.problems] == [
        f"questions.jsonl line {n}" for n in (2, 3, 4, 5, 6, 7, 9, 10)
    ]
    text = "\n".join(error.value.problems)
    for expected in (
        "not valid JSON",
        "missing field 'sql'",
        "field 'question' is blank",
        "field 'difficulty' must be text, got a number",
        "unknown db_id 'shopp'; databases found: plants, shop",
        "id 'a' is already used on line 1",
        "split 'dev/1' is not letters, digits, _ or -",
        "expected an object, got a list",
    ):
        assert expected in text
    assert not (tmp_path / "data" / "custom").exists()  # nothing half-built


def test_make_data_prints_the_problems_and_fails(tmp_path: Path) -> None:
    source = make_custom_source(tmp_path / "src")
    (source / "questions.jsonl").write_text('{"question": "q", "sql": "SELECT 1"}\n')
    done = make("DATASET=custom", f"SOURCE={source}", f"DATA_DIR={tmp_path / 'd'}")
    assert done.returncode != 0
    assert "questions.jsonl line 1: missing field 'db_id'" in done.stderr


def test_csv_problems_name_the_line_a_row_starts_on(tmp_path: Path) -> None:
    source = make_custom_source(tmp_path / "src")
    (source / "questions.jsonl").unlink()
    (source / "questions.csv").write_text(
        "question,sql,db_id\n"
        '"A question\nover two lines",SELECT 1,shop\n'  # lines 2-3
        "\n"  # line 4, blank
        ",SELECT 1,shop\n"  # line 5
        "q,SELECT 1,shop,extra\n"  # line 6
    )
    with pytest.raises(SourceError) as error:
        build("custom", [str(source)], tmp_path / "data")
    assert error.value.problems == [
        "questions.csv line 5: missing field 'question'",
        "questions.csv line 6: 4 cells, the header has 3",
    ]


def test_a_csv_header_without_a_required_column_is_one_problem(tmp_path: Path) -> None:
    source = make_custom_source(tmp_path / "src")
    (source / "questions.jsonl").unlink()
    (source / "questions.csv").write_text("question,query,db_id\nq,SELECT 1,shop\n")
    with pytest.raises(SourceError) as error:
        build("custom", [str(source)], tmp_path / "data")
    assert error.value.problems == [
        "questions.csv line 1: the header has no column 'sql'"
    ]


def test_unknown_fields_are_noted_not_fatal(tmp_path: Path) -> None:
    source = make_custom_source(tmp_path / "src")
    records = [dict(CUSTOM_QUESTIONS[0], evidnce="typo")]
    write_questions(source, records, "jsonl")
    report = build("custom", [str(source)], tmp_path / "data", workers=1).report
    assert report["splits"]["train"]["eligible"] == 1
    assert any("'evidnce' (first on line 1) is not used" in n for n in report["notes"])


def test_a_db_id_with_two_files_is_a_problem(tmp_path: Path) -> None:
    source = make_custom_source(tmp_path / "src")
    shutil.copy(source / "shop.sqlite", source / "shop.db")
    with pytest.raises(SourceError, match="db_id 'shop' matches several files"):
        build("custom", [str(source)], tmp_path / "data")


@pytest.mark.parametrize(
    ("files", "match"),
    [
        ((), "no questions.jsonl or questions.csv"),
        (("questions.jsonl", "questions.csv"), "Several question files"),
    ],
)
def test_the_questions_file_must_be_one(
    tmp_path: Path, files: tuple[str, ...], match: str
) -> None:
    for name in files:
        (tmp_path / name).write_text("")
    with pytest.raises(SourceError, match=match):
        build("custom", [str(tmp_path)], tmp_path / "data")


def test_named_datasets_sit_side_by_side_and_rebuild_on_change(tmp_path: Path) -> None:
    shop = make_custom_source(tmp_path / "shop_src")
    plants = make_custom_source(tmp_path / "plants_src")
    write_questions(plants, [r for r in CUSTOM_QUESTIONS if r["db_id"] == "plants"],
                    "jsonl")  # fmt: skip
    data = tmp_path / "data"
    build("custom", [str(shop)], data, name="shop", workers=1)
    build("custom", [str(plants)], data, name="plants", workers=1)
    assert list_datasets(data) == ["plants", "shop"]
    assert load_bank(data, "plants").get("plants/dev/0").db_id == "plants"
    assert load_bank(data, "shop").get("shop/train/0").db_id == "shop"
    assert not build("custom", [str(plants)], data, name="plants").rebuilt
    # The plants questions move to a new database: the old one is removed.
    make_database(
        plants / "garden.sqlite", "CREATE TABLE t (x); INSERT INTO t VALUES (1);"
    )
    write_questions(
        plants,
        [{"question": "x?", "sql": "SELECT x FROM t", "db_id": "garden"}],
        "jsonl",
    )
    assert build("custom", [str(plants)], data, name="plants", workers=1).rebuilt
    assert not database_path(data, "plants", "plants").exists()
    assert load_bank(data, "plants").get("plants/train/0").gold_rows == ((1,),)
