"""The data build takes Spider from a directory, a zip or a URL, and is idempotent."""

import functools
import http.server
import json
import shutil
import threading
from pathlib import Path

import pytest

from sql_env.scripts.build_data import build, main
from sql_env.server.question_bank import database_path, load_bank


def test_report_lists_exclusions_by_reason(tiny_data_dir: Path) -> None:
    report = json.loads((tiny_data_dir / "questions" / "report.json").read_text())
    dev = report["splits"]["dev"]
    assert dev["questions"] == 10 and dev["eligible"] == 6
    assert dev["excluded"] == {
        "gold_all_null": 1,
        "gold_empty": 1,
        "gold_error": 1,
        "missing_database": 1,
    }
    assert report["databases"]["missing"] == ["ghost_db"]
    markdown = (tiny_data_dir / "questions" / "report.md").read_text()
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
    copy = database_path(tiny_data_dir, "shop")
    assert copy.read_bytes() == (tiny_source / "database/shop/shop.sqlite").read_bytes()
    assert not copy.stat().st_mode & 0o222


def test_second_build_is_a_no_op(
    tiny_source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build(str(tiny_source), tmp_path)
    bank_file = tmp_path / "questions" / "dev.json"
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
