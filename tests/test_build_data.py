"""The data build takes Spider from a directory, a zip or a URL, and is idempotent."""

import functools
import http.server
import json
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from sql_env.scripts.build_data import build, main
from sql_env.server.question_bank import (
    BankFormatError,
    bank_path,
    database_path,
    dataset_dir,
    load_bank,
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
    markdown = (dataset_dir(tiny_data_dir) / "report.md").read_text()
    assert "| spider/dev/9 | ghost_db | missing_database |" in markdown


def test_bank_stores_gold_result_order_and_analysis(tiny_data_dir: Path) -> None:
    bank = load_bank(tiny_data_dir)
    ordered = bank.get("spider/dev/1")
    assert ordered.gold_columns == ("name",)
    assert ordered.gold_rows == (("Ann",), ("Cleo",))
    assert ordered.order_matters and "order_by" in ordered.flags
    assert ordered.tables_used == ("customer",)
    assert ordered.hardness in {"easy", "medium", "hard", "extra"}
    assert "duplicate_rows" in bank.get("spider/dev/5").flags
    assert bank.get("spider/dev/8").excluded.startswith("gold_error")


def test_ids_are_positions_in_the_source_files(tiny_data_dir: Path) -> None:
    bank = load_bank(tiny_data_dir)
    assert [q.id for q in bank.all("train")] == [f"spider/train/{i}" for i in range(3)]
    assert bank.get("spider/train/2").question == "Students aged 20, by name."


def test_databases_are_copied_read_only(tiny_data_dir: Path, tiny_source: Path) -> None:
    copy = database_path(tiny_data_dir, "spider", "shop")
    assert copy.read_bytes() == (tiny_source / "database/shop/shop.sqlite").read_bytes()
    assert not copy.stat().st_mode & 0o222


def test_second_build_is_a_no_op(
    tiny_source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build(str(tiny_source), tmp_path)
    bank_file = bank_path(tmp_path)
    mtime = bank_file.stat().st_mtime_ns
    main(["--source", str(tiny_source), "--data-dir", str(tmp_path)])
    assert bank_file.stat().st_mtime_ns == mtime
    out = capsys.readouterr().out
    assert "up to date" in out and "dev: 10 questions, 6 eligible" in out


def test_builds_from_a_zip(tiny_source: Path, tmp_path: Path) -> None:
    archive = shutil.make_archive(
        str(tmp_path / "spider"), "zip", tiny_source.parent, tiny_source.name
    )
    report = build(archive, tmp_path / "data")
    assert report["splits"]["dev"]["eligible"] == 6


def test_builds_from_a_url(tiny_source: Path, tmp_path: Path) -> None:
    archive = Path(shutil.make_archive(str(tmp_path / "spider"), "zip", tiny_source))
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(tmp_path)
    )
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{archive.name}"
        report = build(url, tmp_path / "data")
    finally:
        server.shutdown()
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
    report = build(str(source), tmp_path / "data")
    assert report["databases"]["failed_integrity"] == ["school"]
    assert report["splits"]["train"]["excluded"] == {"missing_database": 3}


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="Spider"):
        build(str(tmp_path / "nowhere"), tmp_path / "data")


def test_a_bank_of_another_format_is_refused_with_the_fix(
    tiny_source: Path, tmp_path: Path
) -> None:
    build(str(tiny_source), tmp_path)
    path = bank_path(tmp_path)
    path.chmod(0o644)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'format'")
    with pytest.raises(BankFormatError, match="run `make data`"):
        load_bank(tmp_path)


def test_the_bank_file_holds_gold_results_the_questions_do_not(
    tiny_data_dir: Path,
) -> None:
    question = load_bank(tiny_data_dir).get("spider/dev/0")
    assert "gold_rows" not in question.__slots__
    assert question.gold_rows == ((6,),)  # read from the file on access
