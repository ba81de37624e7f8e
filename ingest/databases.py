"""The databases of a dataset: found in the source, verified, installed read-only.

Every database must pass ``PRAGMA integrity_check`` before any question uses it; it
is then installed as ``data/<dataset>/databases/<db_id>/<db_id>.sqlite``, mode 0444,
and its schema facts (what DESCRIBE shows) are read from the installed copy.
"""

import os
import shutil
import sqlite3
from pathlib import Path

from sql_env.ingest.sources import walk_files
from sql_env.server.question_bank import Column, ForeignKey, Table

SQLITE_SUFFIXES = (".sqlite", ".sqlite3", ".db")


def find_databases(
    folder: Path, suffixes: tuple[str, ...] = (".sqlite",)
) -> dict[str, Path]:
    """``<db_id>/<db_id>.sqlite`` files under ``folder``, by db_id.

    Spider and BIRD nest each database in a folder of its name, sometimes one
    level deeper than documented (an archive unpacked into a folder of its own
    name); the first file found for a name, in sorted path order, wins.
    """
    found: dict[str, Path] = {}
    for path in walk_files(folder):
        if path.suffix.lower() in suffixes and path.parent.name == path.stem:
            found.setdefault(path.stem, path)
    return found


def integrity_ok(db_path: Path) -> bool:
    """Whether SQLite opens the file and ``PRAGMA integrity_check`` says ok."""
    try:
        conn = _connect_read_only(db_path)
        try:
            return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            conn.close()
    except sqlite3.Error:
        return False


def install(src: Path, dest: Path, *, link: bool = False) -> None:
    """Place a database at ``dest``, read-only, unless the same file is there.

    Args:
        src: The verified database in the source.
        dest: Its place in the data directory.
        link: Hard-link instead of copying where possible: only for files the
            build owns (unpacked into the cache), since the link shares the
            file's permissions, which become read-only.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file() and _same_file(src, dest):
        dest.chmod(0o444)
        return
    dest.unlink(missing_ok=True)
    if link:
        try:
            os.link(src, dest)
        except OSError:
            link = False
    if not link:
        tmp = dest.with_name(dest.name + ".part")
        shutil.copy2(src, tmp)
        tmp.rename(dest)
    dest.chmod(0o444)


def prune(databases_dir: Path, keep: set[str]) -> None:
    """Remove installed databases that the new build no longer has."""
    if not databases_dir.is_dir():
        return
    for folder in databases_dir.iterdir():
        if folder.is_dir() and folder.name not in keep:
            shutil.rmtree(folder)


def read_schema(db_path: Path) -> list[Table]:
    """Tables, columns, keys and row counts, straight from the database."""
    conn = _connect_read_only(db_path)
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


def _connect_read_only(db_path: Path) -> sqlite3.Connection:
    uri = f"{Path(db_path).resolve().as_uri()}?mode=ro&immutable=1"
    return sqlite3.connect(uri, uri=True)


def _same_file(a: Path, b: Path) -> bool:
    """Same inode, or same size and modification time (``install`` keeps mtimes)."""
    sa, sb = a.stat(), b.stat()
    if (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino):
        return True
    return sa.st_size == sb.st_size and sa.st_mtime_ns == sb.st_mtime_ns
