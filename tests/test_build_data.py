"""The data build reads Spider from a directory, a zip or a URL, and is idempotent."""

import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sql_env.ingest.build import build
from sql_env.ingest.sources import SourceError
from sql_env.server.question_bank import (
    SPIDER_LEVELS,
    BankFormatError,
    bank_path,
    database_path,
    dataset_dir,
    list_datasets,
    load_bank,
)
from tests.source_fixtures import make_database

ROOT = Path(__file__).resolve().parents[1]


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command, as `make data` runs it."""
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_data.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "SPIDER_SOURCE": ""},
    )


def test_report_lists_exclusions_by_reason(tiny_data_dir: Path) -> None:
    report = json.loads((dataset_dir(tiny_data_dir) / "report.json").read_text())
    dev = report["splits"]["dev"]
    assert dev["questions"] == 10 and dev["eligible"] == 6
    assert dev["excluded"] == {
        "gold_all_null": 1,
        "gold_empty": 1,
        "gold_error": 1,
        "missing_database": 1,
    }
    assert report["databases"]["missing"] == ["ghost_db"]
    assert report["levels"] == list(SPIDER_LEVELS)
    assert sum(dev["difficulty"].values()) == 6
    markdown = (dataset_dir(tiny_data_dir) / "report.md").read_text()
    assert "| spider/dev/9 |  | ghost_db | missing_database |" in markdown


def test_bank_stores_gold_result_order_and_analysis(tiny_data_dir: Path) -> None:
    bank = load_bank(tiny_data_dir)
    ordered = bank.get("spider/dev/1")
    assert ordered.gold_columns == ("name",)
    assert ordered.gold_rows == (("Ann",), ("Cleo",))
    assert ordered.order_matters and "order_by" in ordered.flags
    assert ordered.tables_used == ("customer",)
    assert ordered.difficulty in SPIDER_LEVELS
    assert "duplicate_rows" in bank.get("spider/dev/5").flags
    assert bank.get("spider/dev/8").excluded.startswith("gold_error")


def test_bank_names_its_splits_and_levels(tiny_data_dir: Path) -> None:
    bank = load_bank(tiny_data_dir)
    assert bank.splits == ("dev", "train")
    assert bank.levels == SPIDER_LEVELS
    assert bank.splits_of("shop") == ("dev",) and bank.db_ids("train") == ["school"]
    assert bank.get("spider/dev/0").evidence == ""
    assert bank.get("spider/dev/0").source_id is None


def test_ids_are_positions_in_the_source_files(tiny_data_dir: Path) -> None:
    bank = load_bank(tiny_data_dir)
    assert [q.id for q in bank.all("train")] == [f"spider/train/{i}" for i in range(3)]
    assert bank.get("spider/train/2").question == "Students aged 20, by name."


def test_databases_are_copied_read_only(tiny_data_dir: Path, tiny_source: Path) -> None:
    copy = database_path(tiny_data_dir, "spider", "shop")
    assert copy.read_bytes() == (tiny_source / "database/shop/shop.sqlite").read_bytes()
    assert not copy.stat().st_mode & 0o222


def test_the_test_split_is_read_when_the_source_has_it(
    tiny_source: Path, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    shutil.copytree(tiny_source, source)
    make_database(
        source / "test_database" / "zoo" / "zoo.sqlite",
        "CREATE TABLE animal (name TEXT); INSERT INTO animal VALUES ('ant'), ('bee');",
    )
    records = [
        {
            "question": "How many animals?",
            "query": "SELECT count(*) FROM animal",
            "db_id": "zoo",
        },
        {"question": "Names?", "query": "SELECT name FROM animal", "db_id": "zoo"},
    ]
    (source / "test.json").write_text(json.dumps(records))
    build("spider", [str(source)], tmp_path / "data", workers=1)
    bank = load_bank(tmp_path / "data")
    assert bank.splits == ("dev", "train", "test")
    assert [q.id for q in bank.eligible("test")] == ["spider/test/0", "spider/test/1"]
    assert bank.get("spider/test/0").gold_rows == ((2,),)
    assert bank.db_ids("test") == ["zoo"]


def test_a_test_file_without_its_databases_is_skipped_with_a_note(
    tiny_source: Path, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    shutil.copytree(tiny_source, source)
    (source / "test.json").write_text("[]")
    result = build("spider", [str(source)], tmp_path / "data", workers=1)
    assert list(result.report["splits"]) == ["dev", "train"]
    assert any("test_database" in note for note in result.report["notes"])


def test_second_build_is_a_no_op(tiny_source: Path, tmp_path: Path) -> None:
    assert build("spider", [str(tiny_source)], tmp_path).rebuilt
    bank_file = bank_path(tmp_path)
    mtime = bank_file.stat().st_mtime_ns
    done = run_script("--source", str(tiny_source), "--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert bank_file.stat().st_mtime_ns == mtime
    assert (
        "up to date" in done.stdout and "dev: 10 questions, 6 eligible" in done.stdout
    )


def test_a_changed_source_is_rebuilt(tiny_source: Path, tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(tiny_source, source)
    build("spider", [str(source)], tmp_path / "data", workers=1)
    records = json.loads((source / "train_spider.json").read_text())
    (source / "train_spider.json").write_text(json.dumps(records[:2]))
    result = build("spider", [str(source)], tmp_path / "data", workers=1)
    assert result.rebuilt and result.report["splits"]["train"]["questions"] == 2


def test_builds_from_a_zip(tiny_source: Path, tmp_path: Path) -> None:
    archive = shutil.make_archive(
        str(tmp_path / "spider"), "zip", tiny_source.parent, tiny_source.name
    )
    report = build("spider", [archive], tmp_path / "data").report
    assert report["splits"]["dev"]["eligible"] == 6


def test_builds_from_a_url(
    tiny_source: Path, tmp_path: Path, serve_dir: Callable[[Path], str]
) -> None:
    archive = Path(shutil.make_archive(str(tmp_path / "spider"), "zip", tiny_source))
    url = f"{serve_dir(tmp_path)}/{archive.name}"
    report = build("spider", [url], tmp_path / "data").report
    assert report["splits"]["train"]["eligible"] == 3


def test_corrupt_database_fails_integrity_check(
    tiny_source: Path, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    shutil.copytree(tiny_source, source)
    db = source / "database" / "school" / "school.sqlite"
    data = bytearray(db.read_bytes())
    data[len(data) // 2 :] = b"\xff" * (len(data) - len(data) // 2)
    db.write_bytes(bytes(data))
    report = build("spider", [str(source)], tmp_path / "data").report
    assert report["databases"]["failed_integrity"] == ["school"]
    assert report["splits"]["train"]["excluded"] == {"corrupt_database": 3}
    assert not database_path(tmp_path / "data", "spider", "school").exists()


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        build("spider", [str(tmp_path / "nowhere")], tmp_path / "data")
    done = run_script(
        "--source", str(tmp_path / "nowhere"), "--data-dir", str(tmp_path)
    )
    assert done.returncode == 2 and "does not exist" in done.stderr


def test_a_directory_without_spider_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no Spider layout"):
        build("spider", [str(tmp_path)], tmp_path / "data")


@pytest.mark.parametrize("name", ["Spider", "../x", "cache", "a b", ""])
def test_dataset_names_stay_plain(tiny_source: Path, tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="Dataset name"):
        build("spider", [str(tiny_source)], tmp_path, name=name or "/")


def test_a_bank_of_another_format_is_refused_with_the_fix(
    tiny_source: Path, tmp_path: Path
) -> None:
    build("spider", [str(tiny_source)], tmp_path)
    path = bank_path(tmp_path)
    path.chmod(0o644)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'format'")
    with pytest.raises(BankFormatError, match="run `make data`"):
        load_bank(tmp_path)


def test_the_bank_file_holds_gold_results_the_questions_do_not(
    tiny_data_dir: Path,
) -> None:
    question = load_bank(tiny_data_dir).get("spider/dev/0")
    assert "gold_rows" not in question.__slots__
    assert question.gold_rows == ((6,),)  # read from the file on access


def test_named_copies_are_built_side_by_side(tiny_source: Path, tmp_path: Path) -> None:
    build("spider", [str(tiny_source)], tmp_path, workers=1)
    build("spider", [str(tiny_source)], tmp_path, name="spider-copy", workers=1)
    assert list_datasets(tmp_path) == ["spider", "spider-copy"]
    copy = load_bank(tmp_path, "spider-copy")
    assert copy.get("spider-copy/dev/1").gold_rows == (("Ann",), ("Cleo",))
