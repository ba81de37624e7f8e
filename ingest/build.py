"""Build one dataset's question bank from its source: ``make data DATASET=...``.

The steps, each shown with a progress bar:

1. resolve the source (directory, zip or URL) and let the dataset's adapter read
   it: questions by split in source order, database files, difficulty levels;
2. stop here if the bank was built from the same files by the same rules (the
   stamp in the bank holds a fingerprint of every file read);
3. verify every database with ``PRAGMA integrity_check`` and install it read-only
   under ``data/<dataset>/databases/``;
4. run every gold query once in the agent's sandbox (``gold.py``); analyse it
   with sqlglot (tables read, outer ORDER BY);
5. write the bank (``server/question_bank.py``) and the report.

Questions whose database is missing or corrupt, or whose gold fails, is too large
or returns nothing useful, are kept in the bank but excluded from sampling, each
with its reason.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sql_env.ingest import bird, custom, spider
from sql_env.ingest.adapter import Adapter, SourceData, SourceQuestion
from sql_env.ingest.databases import install, integrity_ok, prune, read_schema
from sql_env.ingest.gold import GoldResult, run_golds
from sql_env.ingest.parallel import default_workers, run_jobs
from sql_env.ingest.report import make_report, read_report, write_report
from sql_env.ingest.sources import SourceError, fingerprint, resolve
from sql_env.ingest.sql_analysis import has_order_by, tables_used
from sql_env.server.question_bank import (
    BANK_FORMAT,
    DEFAULT_DATA_DIR,
    Question,
    Table,
    bank_path,
    database_path,
    dataset_dir,
    read_stamp,
    write_bank,
)

ADAPTERS: dict[str, Adapter] = {
    a.name: a for a in (spider.ADAPTER, bird.ADAPTER, custom.ADAPTER)
}
BUILD_VERSION = 2  # bump when the bank's content rules change
CACHE_DIR = "cache"
DATASET_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
CORRUPT_DATABASE = "corrupt_database"


@dataclass(frozen=True)
class BuildResult:
    """What ``build`` did: the report, and whether it had to rebuild."""

    report: dict[str, Any]
    rebuilt: bool
    folder: Path


def check_name(name: str) -> str:
    """A dataset name is a directory name and an id prefix: keep it plain.

    Raises:
        ValueError: It is not lower-case letters, digits, ``_`` or ``-``, or it
            is the cache's name.
    """
    if not DATASET_NAME.fullmatch(name) or name == CACHE_DIR:
        raise ValueError(
            f"Dataset name {name!r}: use lower-case letters, digits, _ or - "
            f"(not {CACHE_DIR!r})."
        )
    return name


def build(
    adapter: str,
    sources: Sequence[str] | None = None,
    data_dir: Path = DEFAULT_DATA_DIR,
    *,
    name: str | None = None,
    force: bool = False,
    workers: int | None = None,
) -> BuildResult:
    """Build (or confirm up to date) one dataset's databases, bank and report.

    Args:
        adapter: ``spider``, ``bird`` or ``custom``.
        sources: Directories, zips or URLs (default: the adapter's own).
        data_dir: The data directory; the dataset goes to ``data_dir/<name>``.
        name: The dataset's name (default: the adapter's); question ids start
            with it.
        force: Rebuild even when the bank is up to date.
        workers: Threads for integrity checks and gold queries (default: one
            per CPU).

    Raises:
        SourceError: The source is missing or holds bad records (all listed).
        ValueError: Unknown adapter or bad dataset name.
    """
    if adapter not in ADAPTERS:
        raise ValueError(
            f"Unknown dataset {adapter!r}; use one of {', '.join(ADAPTERS)}."
        )
    spec = ADAPTERS[adapter]
    name = check_name(name or spec.name)
    sources = list(sources or spec.default_sources())
    if not sources:
        raise SourceError([f"the {adapter} dataset needs a source (--source DIR)"])
    data_dir = Path(data_dir)
    folder = dataset_dir(data_dir, name)
    data = spec.read(resolve(sources, data_dir / CACHE_DIR))
    stamp = {
        "adapter": adapter,
        "fingerprint": fingerprint(data.files),
        "build": BUILD_VERSION,
        "format": BANK_FORMAT,
    }
    report = read_report(folder)
    if not force and report and read_stamp(bank_path(data_dir, name)) == stamp:
        return BuildResult(report, rebuilt=False, folder=folder)

    workers = workers or default_workers()
    db_paths, schemas, databases = _install_databases(data, data_dir, name, workers)
    entries: list[tuple[Question, tuple[tuple[Any, ...], ...]]] = []
    questions: dict[str, list[Question]] = {}
    for split, items in data.splits.items():
        golds = run_golds(
            [(db_paths.get(q.db_id), q.sql) for q in items],
            workers=workers,
            desc=f"{split} gold queries",
        )
        corrupt = set(databases["failed_integrity"])
        built = [
            _question(name, i, item, gold, corrupt)
            for i, (item, gold) in enumerate(zip(items, golds, strict=True))
        ]
        entries += built
        questions[split] = [q for q, _ in built]
    write_bank(
        bank_path(data_dir, name),
        questions=entries,
        schemas=schemas,
        stamp=stamp,
        splits=list(data.splits),
        levels=data.levels,
    )
    report = make_report(
        dataset=name,
        adapter=adapter,
        levels=data.levels,
        questions=questions,
        databases=databases,
        notes=data.notes,
    )
    write_report(folder, report)
    return BuildResult(report, rebuilt=True, folder=folder)


def _install_databases(
    data: SourceData, data_dir: Path, name: str, workers: int
) -> tuple[dict[str, Path], dict[str, list[Table]], dict[str, Any]]:
    """Verify, install and read every database the questions use.

    Returns:
        The installed paths and schemas by db_id, and the report's database facts.
    """
    wanted = sorted({q.db_id for items in data.splits.values() for q in items})
    present = [db_id for db_id in wanted if db_id in data.databases]
    sources = [data.databases[db_id] for db_id in present]
    checks = run_jobs(
        integrity_ok,
        sources,
        workers=workers,
        desc="integrity_check",
        unit="db",
        sizes=[max(1, p.stat().st_size >> 20) for p in sources],
    )
    cache = (data_dir / CACHE_DIR).resolve()
    db_paths: dict[str, Path] = {}
    schemas: dict[str, list[Table]] = {}
    for db_id, src, ok in zip(present, sources, checks, strict=True):
        if ok:
            dest = database_path(data_dir, name, db_id)
            install(src, dest, link=src.resolve().is_relative_to(cache))
            db_paths[db_id] = dest
            schemas[db_id] = read_schema(dest)
    prune(dataset_dir(data_dir, name) / "databases", set(db_paths))
    facts = {
        "copied": len(db_paths),
        "failed_integrity": [
            d for d, ok in zip(present, checks, strict=True) if not ok
        ],
        "missing": [db_id for db_id in wanted if db_id not in data.databases],
    }
    return db_paths, schemas, facts


def _question(
    dataset: str,
    index: int,
    item: SourceQuestion,
    gold: GoldResult,
    corrupt: set[str],
) -> tuple[Question, tuple[tuple[Any, ...], ...]]:
    """The bank's question for one source question and its gold result."""
    excluded = gold.excluded
    if item.db_id in corrupt:
        excluded = CORRUPT_DATABASE
    order_matters = has_order_by(item.sql)
    flags = ["order_by"] if order_matters else []
    if len(set(gold.rows)) < len(gold.rows):
        flags.append("duplicate_rows")
    question = Question(
        id=f"{dataset}/{item.split}/{index}",
        split=item.split,
        db_id=item.db_id,
        question=item.question,
        gold_sql=item.sql,
        gold_columns=gold.columns,
        order_matters=order_matters,
        difficulty=item.difficulty,
        tables_used=tuple(tables_used(item.sql)),
        flags=tuple(flags),
        excluded=excluded,
        evidence=item.evidence,
        source_id=item.source_id,
    )
    return question, gold.rows
