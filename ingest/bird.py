"""BIRD (Li et al., NeurIPS 2023): https://bird-bench.github.io/ (CC BY-SA 4.0)

Read in the layout BIRD publishes. The official downloads, linked from the
leaderboard site (repository ``bird-bench/bird-bench.github.io``, ``index.html``),
are ``train.zip`` and ``dev.zip`` (``OFFICIAL_URLS``); each holds a second zip with
the databases, and the dev zip also carries macOS ``__MACOSX/`` junk::

    dev.zip
        dev_20240627/            (``dev/`` in the first release)
            dev.json             [{question_id, db_id, question, evidence, SQL,
                                   difficulty}, ...]
            dev_tables.json, dev.sql, dev_tied_append.json
            dev_databases.zip
                dev_databases/<db_id>/<db_id>.sqlite
                dev_databases/<db_id>/database_description/*.csv
    train.zip
        train/
            train.json           [{db_id, question, evidence, SQL}, ...]
            train_tables.json, train_gold.sql
            train_databases.zip
                train_databases/<db_id>/<db_id>.sqlite

Mini-Dev (``bird-bench/mini_dev``; ``minidev.zip`` from the same host) keeps its
SQLite questions beside a copy of the dev databases::

    minidev/MINIDEV/
        mini_dev_sqlite.json     [{question_id, db_id, question, evidence, SQL,
                                   difficulty}, ...]
        dev_databases/<db_id>/<db_id>.sqlite

Field names and values follow the dataset card in ``AlibabaResearch/DAMO-ConvAI``
``bird/README.md`` and the official evaluation (``bird/llm/src/evaluation.py``
groups dev by ``difficulty`` in simple/moderate/challenging); the paths inside the
zips follow the scripts that unpack them in public repositories (``dev_20240627/
dev_databases.zip`` unpacked beside itself; ``train/train_databases.zip``).

Splits: ``dev``, ``train`` and ``minidev``, each when the source has its question
file beside its database folder (or that folder's zip). Ids are
``bird/<split>/<i>``, the position in the split's file; BIRD's ``question_id`` is
kept as the question's ``source_id`` (Mini-Dev's are dev's). Difficulty is BIRD's
annotation (``simple`` < ``moderate`` < ``challenging``); train has none, so train
questions have no level. The evidence is kept with each question.
"""

from pathlib import Path

from sql_env.ingest.adapter import (
    Adapter,
    SourceData,
    SourceQuestion,
    choose_databases,
    ordered_levels,
    read_question_file,
)
from sql_env.ingest.databases import find_databases
from sql_env.ingest.sources import SourceError, SourceTree

NAME = "bird"
OFFICIAL_URLS = [
    "https://bird-bench.oss-cn-beijing.aliyuncs.com/dev.zip",
    "https://bird-bench.oss-cn-beijing.aliyuncs.com/train.zip",
]
LEVELS = ("simple", "moderate", "challenging")
# split -> (question file, database folder beside it)
SPLITS = {
    "dev": ("dev.json", "dev_databases"),
    "train": ("train.json", "train_databases"),
    "minidev": ("mini_dev_sqlite.json", "dev_databases"),
}
REQUIRED = ("db_id", "question", "SQL")
OPTIONAL = ("evidence", "difficulty", "question_id")


def default_sources() -> list[str]:
    return list(OFFICIAL_URLS)


def find_split(tree: SourceTree, split: str) -> tuple[Path, Path] | None:
    """The split's question file and database folder, if the source has them.

    Raises:
        SourceError: The source has several sets of this split (give one release
            as the source), or a question file without its database folder.
    """
    file_name, db_folder = SPLITS[split]
    found = tree.find(file_name)
    usable = [(p, f) for p in found if (f := tree.folder(p.parent, db_folder))]
    if len(usable) > 1:
        raise SourceError(
            [str(p) for p, _ in usable],
            f"Several BIRD {split} sets in the source; give one as the source:",
        )
    if not usable and found:
        raise SourceError(
            [f"{p} has no {db_folder}/ (or {db_folder}.zip) beside it" for p in found]
        )
    return usable[0] if usable else None


def _question(split: str, fields: dict[str, str]) -> SourceQuestion:
    return SourceQuestion(
        split=split,
        db_id=fields["db_id"],
        question=fields["question"],
        sql=fields["SQL"],
        evidence=fields.get("evidence", ""),
        difficulty=fields.get("difficulty", ""),
        source_id=fields.get("question_id"),
    )


def read(tree: SourceTree) -> SourceData:
    """BIRD's splits, databases and difficulty levels from its published layout."""
    splits: dict[str, list[SourceQuestion]] = {}
    folders: dict[str, dict[str, Path]] = {}
    files: list[Path] = []
    problems: list[str] = []
    for split in SPLITS:
        found = find_split(tree, split)
        if found is None:
            continue
        path, db_folder = found
        splits[split], bad = read_question_file(
            path, split, REQUIRED, OPTIONAL, _question
        )
        problems += bad
        folders[split] = find_databases(db_folder)
        files.append(path)
    if not splits:
        raise SourceError(
            [
                f"{file_name} beside {db_folder}/"
                for file_name, db_folder in SPLITS.values()
            ],
            f"No BIRD split in {tree}; expected one of:",
        )
    if problems:
        raise SourceError(problems, "The BIRD source has bad records:")
    databases, notes = choose_databases(splits, folders)
    seen = [q.difficulty for questions in splits.values() for q in questions]
    return SourceData(
        splits=splits,
        databases=databases,
        levels=ordered_levels(LEVELS, seen),
        files=(*files, *databases.values()),
        notes=tuple(notes),
    )


ADAPTER = Adapter(NAME, read, default_sources)
