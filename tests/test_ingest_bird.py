"""BIRD in its published layout: the official zips (nested zips, macOS junk) over
HTTP, the unpacked directories, and Mini-Dev, built by the real data build."""

from collections.abc import Callable
from pathlib import Path

import pytest

from sql_env.ingest.build import build
from sql_env.ingest.sources import SourceError, walk_files
from sql_env.server.question_bank import database_path, list_datasets, load_bank
from tests.source_fixtures import (
    BIRD_DEV,
    BIRD_MINIDEV,
    BIRD_TRAIN,
    make_bird_zips,
    unzip,
)


@pytest.fixture(scope="module")
def bird_zips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_bird_zips(tmp_path_factory.mktemp("bird_zips"))


@pytest.fixture(scope="module")
def bird_data(bird_zips: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("bird_data")
    build("bird", [str(bird_zips["dev"]), str(bird_zips["train"])], data_dir)
    return data_dir


def public_view(data_dir: Path, dataset: str = "bird") -> list[tuple]:
    bank = load_bank(data_dir, dataset)
    return [
        (q.id, q.db_id, q.question, q.evidence, q.difficulty, q.source_id, q.excluded,
         q.gold_rows)
        for split in bank.splits
        for q in bank.all(split)
    ]  # fmt: skip


def test_official_zips_over_http_build_dev_and_train(
    bird_zips: dict[str, Path],
    bird_data: Path,
    tmp_path: Path,
    serve_dir: Callable[[Path], str],
) -> None:
    base = serve_dir(bird_zips["dev"].parent)
    urls = [f"{base}/dev.zip", f"{base}/train.zip"]
    result = build("bird", urls, tmp_path)
    bank = load_bank(tmp_path, "bird")
    assert bank.splits == ("dev", "train")
    assert [q.id for q in bank.all("dev")] == [f"bird/dev/{i}" for i in range(6)]
    assert result.report["splits"]["dev"]["excluded"] == {
        "gold_error": 1,
        "missing_database": 1,
    }
    assert result.report["databases"]["missing"] == ["thrombosis_prediction"]
    assert result.report["splits"]["train"]["excluded"] == {"gold_empty": 1}
    assert public_view(tmp_path) == public_view(bird_data)  # as from the files
    installed = database_path(tmp_path, "bird", "card_games")
    assert installed.stat().st_nlink == 2  # linked to the unpacked copy, not copied
    unpacked = [p.relative_to(tmp_path) for p in (tmp_path / "cache").rglob("*")]
    assert not [p for p in unpacked if "__MACOSX" in p.parts or p.suffix == ".zip"
                and "unpacked" in p.parts]  # fmt: skip


def test_questions_keep_evidence_difficulty_and_bird_ids(bird_data: Path) -> None:
    bank = load_bank(bird_data, "bird")
    first = bank.get("bird/dev/0")
    assert first.question == BIRD_DEV[0]["question"]
    assert first.evidence == BIRD_DEV[0]["evidence"]
    assert first.gold_sql == BIRD_DEV[0]["SQL"]
    assert first.difficulty == "simple" and first.source_id == "0"
    assert first.gold_rows == ((0.6,),) and first.order_matters
    assert bank.get("bird/dev/3").gold_rows == ((50.0,),)
    train = bank.get("bird/train/0")
    assert train.evidence == BIRD_TRAIN[0]["evidence"]
    assert train.difficulty == "" and train.source_id is None
    assert train.gold_rows == (("Brief Encounter",),)


def test_difficulty_levels_are_birds_and_selectable(bird_data: Path) -> None:
    bank = load_bank(bird_data, "bird")
    assert bank.levels == ("simple", "moderate", "challenging")
    assert [q.id for q in bank.eligible("dev", difficulty="moderate")] == ["bird/dev/2"]
    assert [q.id for q in bank.eligible("dev", difficulty="challenging")] == [
        "bird/dev/3"
    ]
    report = (bird_data / "bird" / "report.json").read_text()
    assert '"unrated": 2' in report  # train has no difficulty in BIRD


def test_the_unpacked_layout_builds_the_same_bank(
    bird_zips: dict[str, Path], bird_data: Path, tmp_path: Path
) -> None:
    source = tmp_path / "bird"
    for name in ("dev", "train"):
        unzip(bird_zips[name], source)
    for inner in (
        source / "dev_20240627" / "dev_databases.zip",
        source / "train" / "train_databases.zip",
    ):
        unzip(inner, inner.parent)
    build("bird", [str(source)], tmp_path / "data")
    assert public_view(tmp_path / "data") == public_view(bird_data)


def test_inner_zips_left_zipped_are_unpacked_into_the_cache_only(
    bird_zips: dict[str, Path], bird_data: Path, tmp_path: Path
) -> None:
    source = unzip(bird_zips["dev"], tmp_path / "bird")  # dev_databases.zip inside
    before = sorted(walk_files(source))
    build("bird", [str(source)], tmp_path / "data", workers=1)
    assert sorted(walk_files(source)) == before
    dev = [row for row in public_view(bird_data) if row[0].startswith("bird/dev/")]
    assert public_view(tmp_path / "data") == dev


def test_mini_dev_is_its_own_split_on_the_dev_databases(
    bird_zips: dict[str, Path], tmp_path: Path
) -> None:
    sources = [str(bird_zips["dev"]), str(bird_zips["minidev"])]
    build("bird", sources, tmp_path, workers=1)
    bank = load_bank(tmp_path, "bird")
    assert bank.splits == ("dev", "minidev")
    minidev = bank.all("minidev")
    assert [q.source_id for q in minidev] == [
        str(r["question_id"]) for r in BIRD_MINIDEV
    ]
    assert [q.id for q in minidev] == [
        "bird/minidev/0",
        "bird/minidev/1",
        "bird/minidev/2",
    ]
    assert bank.get("bird/minidev/0").gold_rows == bank.get("bird/dev/3").gold_rows
    assert bank.splits_of("card_games") == ("dev", "minidev")
    assert bank.db_ids("minidev") == ["card_games", "school_meals"]


def test_mini_dev_alone(bird_zips: dict[str, Path], tmp_path: Path) -> None:
    build("bird", [str(bird_zips["minidev"])], tmp_path, name="bird-minidev")
    bank = load_bank(tmp_path, "bird-minidev")
    assert bank.splits == ("minidev",)
    assert len(bank.eligible("minidev")) == 3


def test_bird_and_spider_are_served_side_by_side(
    bird_zips: dict[str, Path], tiny_source: Path, tmp_path: Path
) -> None:
    build("spider", [str(tiny_source)], tmp_path, workers=1)
    build("bird", [str(bird_zips["dev"])], tmp_path, workers=1)
    assert list_datasets(tmp_path) == ["bird", "spider"]
    assert load_bank(tmp_path, "spider").levels == ("easy", "medium", "hard", "extra")
    assert load_bank(tmp_path, "bird").get("bird/dev/1").gold_rows == ((2,),)


def test_a_bad_record_is_named(tmp_path: Path) -> None:
    source = tmp_path / "dev"
    (source / "dev_databases" / "x").mkdir(parents=True)
    (source / "dev.json").write_text(
        '[{"question_id": 0, "db_id": "x", "question": "q?", "evidence": ""},'
        ' {"question_id": 1, "db_id": "x", "question": " ", "SQL": "SELECT 1"}]'
    )
    with pytest.raises(SourceError) as error:
        build("bird", [str(source)], tmp_path / "data")
    assert error.value.problems == [
        "dev.json record 0: missing field 'SQL'",
        "dev.json record 1: field 'question' is blank",
    ]


def test_a_question_file_without_its_databases_is_refused(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "train.json").write_text("[]")
    with pytest.raises(SourceError, match="no train_databases/"):
        build("bird", [str(tmp_path)], tmp_path / "data")
