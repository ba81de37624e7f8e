"""Spider 1.0 (Yu et al., EMNLP 2018): https://yale-lily.github.io/spider

The official ``spider_data.zip`` (CC BY-SA 4.0), unpacked, or any directory laid
out like it::

    spider_data/
        dev.json                 1,034 questions: question, query, db_id, ...
        train_spider.json        7,000 questions
        tables.json
        database/<db_id>/<db_id>.sqlite
        test.json                test split (released 2023), when present
        test_database/<db_id>/<db_id>.sqlite

Splits: ``dev``, ``train`` (``train_spider.json``; ``train_others.json`` holds the
questions of six schema-only databases and is not read) and ``test`` when the
source has both ``test.json`` and ``test_database/``. Question ids are
``spider/<split>/<i>``, the position in the split's file. Difficulty is Spider's
official hardness, computed from the gold SQL (``sql_analysis.difficulty``); Spider
has no evidence.
"""

from pathlib import Path

from sql_env.ingest.adapter import (
    Adapter,
    SourceData,
    SourceQuestion,
    choose_databases,
    read_question_file,
)
from sql_env.ingest.databases import find_databases
from sql_env.ingest.sources import SourceError, SourceTree
from sql_env.ingest.sql_analysis import hardness
from sql_env.server.question_bank import DEFAULT_DATA_DIR, SPIDER_LEVELS

NAME = "spider"
# The official Spider 1.0 release, as linked from its site (Google Drive).
OFFICIAL_URL = (
    "https://drive.usercontent.google.com/download"
    "?id=1403EGqzIDoHMdQF4c9Bkyl7dZLZ5Wt6J&export=download&confirm=t"
)
# A mirror beside the project (``../shared/spider``), used before the download.
SHARED_MIRROR = DEFAULT_DATA_DIR.parent.parent / "shared" / "spider"
# split -> (question file, database folder)
SPLITS = {
    "dev": ("dev.json", "database"),
    "train": ("train_spider.json", "database"),
    "test": ("test.json", "test_database"),
}
REQUIRED_SPLITS = ("dev", "train")


def default_sources() -> list[str]:
    """The shared mirror beside the project when it exists, else the official zip."""
    return [str(SHARED_MIRROR)] if SHARED_MIRROR.is_dir() else [OFFICIAL_URL]


def find_root(tree: SourceTree) -> Path:
    """The directory holding ``dev.json`` and ``database/``.

    Raises:
        SourceError: No root holds Spider's layout.
    """
    candidates = [*tree.roots, *(p.parent for p in tree.find("dev.json"))]
    for candidate in candidates:
        if (candidate / "dev.json").is_file() and tree.folder(candidate, "database"):
            return candidate
    raise SourceError([f"no Spider layout (dev.json beside database/) in {tree}"])


def _question(split: str, fields: dict[str, str]) -> SourceQuestion:
    return SourceQuestion(
        split=split,
        db_id=fields["db_id"],
        question=fields["question"],
        sql=fields["query"],
        difficulty=hardness(fields["query"]),
    )


def read(tree: SourceTree) -> SourceData:
    """Spider's splits, databases and hardness levels from its unpacked layout."""
    root = find_root(tree)
    splits: dict[str, list[SourceQuestion]] = {}
    folders: dict[str, dict[str, Path]] = {}
    files: list[Path] = []
    problems: list[str] = []
    notes: list[str] = []
    for split, (file_name, db_folder) in SPLITS.items():
        path = root / file_name
        if not path.is_file():
            if split in REQUIRED_SPLITS:
                problems.append(f"{path} is missing")
            continue
        folder = tree.folder(root, db_folder)
        if folder is None:
            notes.append(f"{file_name} without {db_folder}/: split {split} skipped")
            continue
        splits[split], bad = read_question_file(
            path, split, ("question", "query", "db_id"), (), _question
        )
        problems += bad
        folders[split] = find_databases(folder)
        files.append(path)
    if problems:
        raise SourceError(problems, f"The Spider source at {root} has bad records:")
    databases, shadowed = choose_databases(splits, folders)
    return SourceData(
        splits=splits,
        databases=databases,
        levels=SPIDER_LEVELS,
        files=(*files, *databases.values()),
        notes=(*notes, *shadowed),
    )


ADAPTER = Adapter(NAME, read, default_sources)
