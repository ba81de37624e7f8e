# /// script
# requires-python = ">=3.11"
# dependencies = ["sqlglot>=26,<31", "tqdm>=4.66,<5"]
# ///
"""Fetch Spider, verify its databases and build SQLEnv's question bank.

    make data                                   # what `make serve` / `make test` run
    SPIDER_SOURCE=/path/to/spider make data     # a directory laid out like Spider
    SPIDER_SOURCE=~/spider_data.zip make data   # the official zip, or any zip of one
    SPIDER_SOURCE=https://host/spider.zip make data
    python -m sql_env.scripts.build_data --source DIR --data-dir data --force

With no source given it uses ``../shared/spider`` next to the project when that
exists, else the official download. Each database must pass ``PRAGMA
integrity_check``; it is copied to ``data/databases/<db>/<db>.sqlite``. Every
gold query runs once, in the same read-only sandbox the agent uses, and its
result is stored with the question. Questions whose database is missing, whose
gold SQL fails, or whose result is empty or all NULL are kept in the bank but
excluded from sampling, with the reason in ``data/questions/report.md``. The
build is idempotent: an unchanged source is not rebuilt.
"""

import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import urllib.request
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from sql_env.server.errors import SQLEnvError
from sql_env.server.question_bank import (
    BANK_FORMAT,
    DEFAULT_DATA_DIR,
    Column,
    ForeignKey,
    Question,
    Table,
    bank_path,
    database_path,
    dataset_dir,
    read_stamp,
    write_bank,
)
from sql_env.server.sandbox import Sandbox
from sql_env.server.sql_analysis import hardness, has_order_by, tables_used
from sql_env.training.cli import parse_args

# The official Spider 1.0 release (Yu et al., 2018), as linked from its site.
OFFICIAL_URL = (
    "https://drive.usercontent.google.com/download"
    "?id=1403EGqzIDoHMdQF4c9Bkyl7dZLZ5Wt6J&export=download&confirm=t"
)
SHARED_MIRROR = DEFAULT_DATA_DIR.parent.parent / "shared" / "spider"
DATASET = "spider"
SPLIT_FILES = {"dev": "dev.json", "train": "train_spider.json"}
GOLD_TIMEOUT_S = 30.0
GOLD_MAX_ROWS = 100_000
BUILD_VERSION = 1  # bump when the bank's content rules change


@dataclass
class BuildArgs:
    source: str | None = field(
        default=None,
        metadata={"help": "Spider directory, zip or URL (default: SPIDER_SOURCE)"},
    )
    data_dir: Path = field(
        default=DEFAULT_DATA_DIR, metadata={"help": "Where to write the data"}
    )
    force: bool = field(default=False, metadata={"help": "Rebuild even if current"})


def default_source() -> str:
    """SPIDER_SOURCE, else the shared mirror beside the project, else the URL."""
    env = os.environ.get("SPIDER_SOURCE", "").strip()
    if env:
        return env
    if SHARED_MIRROR.is_dir():
        return str(SHARED_MIRROR)
    return OFFICIAL_URL


def find_spider_root(path: Path) -> Path:
    """The directory holding ``dev.json`` and ``database/`` inside ``path``."""
    candidates = [path, *sorted(p.parent for p in path.rglob("dev.json"))]
    for candidate in candidates:
        if (candidate / "dev.json").is_file() and (candidate / "database").is_dir():
            return candidate
    raise FileNotFoundError(f"No Spider layout (dev.json + database/) in {path}")


def download(url: str, dest: Path) -> Path:
    """Download ``url`` to ``dest`` with a progress bar, unless already there."""
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".part")
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310
        total = int(response.headers.get("Content-Length") or 0) or None
        with (
            tmp.open("wb") as out,
            tqdm(total=total, unit="B", unit_scale=True, desc="download") as bar,
        ):
            while chunk := response.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))
    tmp.rename(dest)
    return dest


def resolve_source(source: str, cache_dir: Path) -> tuple[Path, str]:
    """Materialise a source as a Spider directory; return it and a fingerprint."""
    if source.startswith(("http://", "https://", "file://")):
        name = hashlib.sha256(source.encode()).hexdigest()[:16] + ".zip"
        source = str(download(source, cache_dir / "downloads" / name))
    path = Path(source).expanduser()
    if path.is_file() and zipfile.is_zipfile(path):
        digest = file_sha256(path)
        target = cache_dir / "extracted" / digest[:16]
        if not target.is_dir():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=target.parent))
            with zipfile.ZipFile(path) as archive:
                archive.extractall(tmp)
            tmp.rename(target)
        return find_spider_root(target), f"zip:{digest}"
    if path.is_dir():
        root = find_spider_root(path)
        return root, f"dir:{directory_fingerprint(root)}"
    raise FileNotFoundError(f"Spider source not found: {source}")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def directory_fingerprint(root: Path) -> str:
    """Names, sizes and mtimes of the files the build reads: cheap and enough."""
    digest = hashlib.sha256()
    files = [root / f for f in (*SPLIT_FILES.values(), "tables.json")]
    files += sorted((root / "database").glob("*/*.sqlite"))
    for path in files:
        if path.is_file():
            stat = path.stat()
            rel = path.relative_to(root).as_posix()
            digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def integrity_ok(db_path: Path) -> bool:
    uri = f"{db_path.resolve().as_uri()}?mode=ro&immutable=1"
    try:
        with sqlite3.connect(uri, uri=True) as conn:
            return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    except sqlite3.Error:
        return False


def read_schema(db_path: Path) -> list[Table]:
    """Tables, columns, keys and row counts, straight from the database."""
    uri = f"{db_path.resolve().as_uri()}?mode=ro&immutable=1"
    conn = sqlite3.connect(uri, uri=True)
    try:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
            )
        ]
        tables = []
        for name in names:
            quoted = '"' + name.replace('"', '""') + '"'
            info = conn.execute(f"PRAGMA table_info({quoted})").fetchall()
            columns = tuple(Column(row[1], row[2] or "") for row in info)
            primary_key = tuple(
                row[1] for row in sorted(info, key=lambda r: r[5]) if row[5]
            )
            fks = tuple(
                ForeignKey(row[3], row[2], row[4])
                for row in conn.execute(f"PRAGMA foreign_key_list({quoted})")
            )
            count = conn.execute(f"SELECT COUNT(*) FROM {quoted}").fetchone()[0]
            tables.append(Table(name, columns, primary_key, fks, count))
        return tables
    finally:
        conn.close()


def jsonable(value: Any) -> Any:
    """Blobs become text so the bank is plain JSON; the verifier does the same."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def build_question(
    split: str, index: int, item: dict[str, Any], db_paths: dict[str, Path]
) -> tuple[Question, tuple[tuple[Any, ...], ...]]:
    """Run one gold query and decide whether the question may be sampled.

    Returns:
        The question and its gold result rows.
    """
    db_id, sql = item["db_id"], item["query"]
    result_columns: tuple[str, ...] = ()
    rows: tuple[tuple[Any, ...], ...] = ()
    excluded = None
    if db_id not in db_paths:
        excluded = "missing_database"
    else:
        sandbox = Sandbox(
            db_paths[db_id], timeout_s=GOLD_TIMEOUT_S, max_rows=GOLD_MAX_ROWS
        )
        try:
            result = sandbox.execute(sql)
            result_columns = result.columns
            rows = tuple(tuple(jsonable(v) for v in row) for row in result.rows)
            if result.more_rows:
                excluded, rows = "gold_too_large", ()
            elif not rows:
                excluded = "gold_empty"
            elif all(v is None for row in rows for v in row):
                excluded = "gold_all_null"
        except SQLEnvError as exc:
            excluded = f"gold_error: {exc}"
        finally:
            sandbox.close()
    order_matters = has_order_by(sql)
    flags = ["order_by"] if order_matters else []
    if len(set(rows)) < len(rows):
        flags.append("duplicate_rows")
    question = Question(
        id=f"{DATASET}/{split}/{index}",
        split=split,
        db_id=db_id,
        question=item["question"],
        gold_sql=sql,
        gold_columns=result_columns,
        order_matters=order_matters,
        hardness=hardness(sql),
        tables_used=tuple(tables_used(sql)),
        flags=tuple(flags),
        excluded=excluded,
    )
    return question, rows


def exclusion_reason(question: Question) -> str | None:
    if question.excluded is None:
        return None
    return question.excluded.split(":")[0]


def write_report(
    qdir: Path, questions: dict[str, list[Question]], dbs: dict[str, Any]
) -> dict[str, Any]:
    report: dict[str, Any] = {"splits": {}, "databases": dbs, "excluded": []}
    for split, items in questions.items():
        reasons = Counter(exclusion_reason(q) for q in items if q.excluded)
        levels = Counter(q.hardness for q in items if q.excluded is None)
        report["splits"][split] = {
            "questions": len(items),
            "eligible": sum(q.excluded is None for q in items),
            "excluded": dict(sorted(reasons.items())),
            "databases": len({q.db_id for q in items}),
            "hardness": {
                k: levels.get(k, 0) for k in ("easy", "medium", "hard", "extra")
            },
        }
        report["excluded"] += [
            {"id": q.id, "db_id": q.db_id, "reason": q.excluded}
            for q in items
            if q.excluded
        ]
    (qdir / "report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    lines = [
        "# Question bank build report",
        "",
        "| split | questions | eligible | databases | excluded (by reason) |",
        "|---|---:|---:|---:|---|",
    ]
    for split, s in report["splits"].items():
        reasons = ", ".join(f"{k}: {v}" for k, v in s["excluded"].items()) or "none"
        lines.append(
            f"| {split} | {s['questions']} | {s['eligible']} | {s['databases']} "
            f"| {reasons} |"
        )
    lines += [
        "",
        f"Databases: {dbs['copied']} copied, {len(dbs['failed_integrity'])} failed "
        f"integrity_check, {len(dbs['missing'])} referenced but missing "
        f"({', '.join(dbs['missing']) or 'none'}).",
        "",
        "## Excluded questions",
        "",
        "| id | db | reason |",
        "|---|---|---|",
    ]
    lines += [
        f"| {e['id']} | {e['db_id']} | {e['reason']} |" for e in report["excluded"]
    ]
    (qdir / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report


def build(source: str, data_dir: Path, force: bool = False) -> dict[str, Any]:
    """Build (or confirm current) databases and question bank; return the report."""
    data_dir = Path(data_dir)
    qdir = dataset_dir(data_dir, DATASET)
    cache_dir = data_dir / "cache"
    cache_dir.mkdir(parents=True, exist_ok=True)
    root, fingerprint = resolve_source(source, cache_dir)
    stamp = {"fingerprint": fingerprint, "build": BUILD_VERSION, "format": BANK_FORMAT}
    bank = bank_path(data_dir, DATASET)
    if not force and read_stamp(bank) == stamp and (qdir / "report.json").is_file():
        print(f"Question bank is up to date ({bank}).")
        return json.loads((qdir / "report.json").read_text())

    items = {
        split: json.loads((root / name).read_text(encoding="utf-8"))
        for split, name in SPLIT_FILES.items()
        if (root / name).is_file()
    }
    wanted = sorted({item["db_id"] for split in items.values() for item in split})
    db_paths: dict[str, Path] = {}
    failed, missing = [], []
    schemas: dict[str, list[Table]] = {}
    for db_id in tqdm(wanted, desc="databases", unit="db"):
        src = root / "database" / db_id / f"{db_id}.sqlite"
        if not src.is_file():
            missing.append(db_id)
            continue
        if not integrity_ok(src):
            failed.append(db_id)
            continue
        dest = database_path(data_dir, DATASET, db_id)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.is_file() or file_sha256(dest) != file_sha256(src):
            shutil.copyfile(src, dest)
        dest.chmod(0o444)
        db_paths[db_id] = dest
        schemas[db_id] = read_schema(dest)

    qdir.mkdir(parents=True, exist_ok=True)
    built: list[tuple[Question, tuple[tuple[Any, ...], ...]]] = []
    questions: dict[str, list[Question]] = {}
    for split, split_items in items.items():
        entries = [
            build_question(split, i, item, db_paths)
            for i, item in enumerate(
                tqdm(split_items, desc=f"{split} gold queries", unit="q")
            )
        ]
        built += entries
        questions[split] = [q for q, _ in entries]
    write_bank(bank, questions=built, schemas=schemas, stamp=stamp)
    dbs = {"copied": len(db_paths), "failed_integrity": failed, "missing": missing}
    return write_report(qdir, questions, dbs)


def print_summary(report: dict[str, Any]) -> None:
    for split, s in report["splits"].items():
        reasons = ", ".join(f"{k} {v}" for k, v in s["excluded"].items()) or "none"
        print(
            f"{split:>5}: {s['questions']} questions, {s['eligible']} eligible, "
            f"{s['databases']} databases; excluded: {reasons}"
        )
    dbs = report["databases"]
    missing = ", ".join(dbs["missing"]) or "none"
    failed = ", ".join(dbs["failed_integrity"]) or "none"
    print(
        f"databases: {dbs['copied']} copied; missing: {missing}; "
        f"failed integrity_check: {failed}"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(BuildArgs, argv, __doc__.split("\n\n")[0])
    source = args.source or default_source()
    print(f"Spider source: {source}")
    report = build(source, args.data_dir, force=args.force)
    print_summary(report)
    print(f"Report: {dataset_dir(args.data_dir, DATASET) / 'report.md'}")


if __name__ == "__main__":
    main()
