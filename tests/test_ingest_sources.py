"""Sources: zips unpacked once with the zips inside them, directories never written,
downloads cached, fingerprints that change when a file does."""

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from sql_env.ingest.sources import (
    SourceError,
    fingerprint,
    resolve,
    unpack,
    walk_files,
)
from tests.source_fixtures import write_zip


def test_nested_zips_are_unpacked_in_place_and_junk_dropped(tmp_path: Path) -> None:
    inner = write_zip(tmp_path / "in.zip", {"dbs/a/a.sqlite": b"A"})
    outer = write_zip(
        tmp_path / "outer.zip",
        {
            "top/q.json": b"[]",
            "top/dbs.zip": inner.read_bytes(),
            "__MACOSX/top/._q.json": b"junk",
            "top/._dbs.zip": b"junk",
        },
    )
    root = unpack(outer, tmp_path / "cache")
    assert sorted(p.relative_to(root).as_posix() for p in walk_files(root)) == [
        "top/dbs/a/a.sqlite",
        "top/q.json",
    ]
    assert not (root / "__MACOSX").exists()
    assert unpack(outer, tmp_path / "cache") == root  # once


def test_a_zip_beside_a_directory_source_is_unpacked_into_the_cache(
    tmp_path: Path,
) -> None:
    source = tmp_path / "src"
    write_zip(source / "dbs.zip", {"a/a.sqlite": b"A"})  # no top folder
    tree = resolve([str(source)], tmp_path / "cache")
    folder = tree.folder(source, "dbs")
    assert folder is not None and (folder / "a" / "a.sqlite").read_bytes() == b"A"
    assert folder.is_relative_to(tmp_path / "cache")
    assert sorted(p.name for p in source.iterdir()) == ["dbs.zip"]
    assert tree.folder(source, "elsewhere") is None


def test_downloads_are_cached_whole(
    tmp_path: Path, serve_dir: Callable[[Path], str]
) -> None:
    write_zip(tmp_path / "site" / "d.zip", {"x/y.json": b"[]"})
    url = f"{serve_dir(tmp_path / 'site')}/d.zip"
    first = resolve([url], tmp_path / "cache")
    (tmp_path / "site" / "d.zip").unlink()  # a second resolve must not fetch
    assert resolve([url], tmp_path / "cache") == first
    downloads = list((tmp_path / "cache" / "downloads").iterdir())
    assert [p.name.endswith("-d.zip") for p in downloads] == [True]


@pytest.mark.parametrize("kind", ["missing", "plain file"])
def test_a_source_that_is_neither_dir_nor_zip_is_refused(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "x.txt"
    if kind == "plain file":
        path.write_text("hello")
    with pytest.raises(SourceError, match="does not exist|neither a directory"):
        resolve([str(path)], tmp_path / "cache")


def test_the_fingerprint_follows_the_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("1")
    b.write_text("2")
    first = fingerprint([a, b])
    assert fingerprint([b, a]) == first
    os.utime(a, ns=(0, 10**9))
    assert fingerprint([a, b]) != first
