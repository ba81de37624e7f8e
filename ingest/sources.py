"""Where a dataset comes from: a directory, a zip, or a URL of a zip.

Every source becomes a local directory (a *root*) that an adapter searches for its
files; several sources (BIRD's ``dev.zip`` and ``train.zip``) make a ``SourceTree``
of several roots. A URL is downloaded once into the cache (with a progress bar); a
zip is unpacked once into the cache, together with the zips inside it (BIRD ships
``dev.zip`` holding ``dev_databases.zip``). A directory is read where it is, never
written to: when an adapter asks for a folder that is there only as a zip
(``dev_databases.zip`` without ``dev_databases/``), ``SourceTree.folder`` unpacks
that zip into the cache instead.

The cache lives under the data directory (``data/cache``): ``downloads/`` keeps
downloaded zips, ``unpacked/`` their contents, keyed by the zip's path, size and
modification time, so an unchanged zip is never unpacked twice.
"""

import hashlib
import os
import shutil
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

URL_SCHEMES = ("http://", "https://", "file://")
DOWNLOAD_TIMEOUT_S = 60
CHUNK_BYTES = 1 << 20
# macOS zips carry resource forks: a __MACOSX/ tree and "._name" twins of every file.
MACOS_JUNK_DIR = "__MACOSX"
MACOS_JUNK_PREFIX = "._"


class SourceError(ValueError):
    """A source is missing, unreadable, or holds bad records; lists every problem.

    ``problems`` holds them all; the message lists the first ``MAX_SHOWN``.
    """

    MAX_SHOWN = 100

    def __init__(self, problems: Sequence[str], heading: str = "") -> None:
        self.problems = list(problems)
        lines = [heading] if heading else []
        lines += [f"  - {problem}" for problem in self.problems[: self.MAX_SHOWN]]
        if len(self.problems) > self.MAX_SHOWN:
            lines.append(f"  ... and {len(self.problems) - self.MAX_SHOWN} more")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class SourceTree:
    """The local directories of a dataset's sources, and the cache beside them."""

    roots: tuple[Path, ...]
    cache_dir: Path

    def find(self, name: str) -> list[Path]:
        """Every file called ``name`` under the roots, in root then path order."""
        return [p for root in self.roots for p in walk_files(root) if p.name == name]

    def folder(self, parent: Path, name: str) -> Path | None:
        """``parent/name``, or the folder unpacked from ``parent/name.zip``."""
        if (parent / name).is_dir():
            return parent / name
        archive = parent / f"{name}.zip"
        if not (archive.is_file() and zipfile.is_zipfile(archive)):
            return None
        unpacked = unpack(archive, self.cache_dir)
        return unpacked / name if (unpacked / name).is_dir() else unpacked

    def __str__(self) -> str:
        return ", ".join(map(str, self.roots))


def is_url(source: str) -> bool:
    return source.startswith(URL_SCHEMES)


def resolve(sources: Iterable[str], cache_dir: Path) -> SourceTree:
    """The local directories holding the given sources, in order.

    Args:
        sources: Directories, zip files or URLs of zip files.
        cache_dir: Where downloads and unpacked zips are kept.

    Raises:
        SourceError: A source does not exist or is neither a directory nor a zip.
    """
    roots: list[Path] = []
    for source in sources:
        path = download(source, cache_dir) if is_url(source) else Path(source)
        path = path.expanduser()
        if path.is_dir():
            roots.append(path)
        elif path.is_file() and zipfile.is_zipfile(path):
            roots.append(unpack(path, cache_dir))
        elif path.exists():
            raise SourceError([f"{source} is neither a directory nor a zip file"])
        else:
            raise SourceError([f"{source} does not exist"])
    return SourceTree(tuple(roots), cache_dir)


def download(url: str, cache_dir: Path) -> Path:
    """Download ``url`` into the cache with a progress bar, unless already there."""
    name = PurePosixPath(url.split("?", 1)[0]).name or "download"
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    dest = cache_dir / "downloads" / f"{key}-{name}"
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:  # noqa: S310
        total = int(response.headers.get("Content-Length") or 0) or None
        with (
            part.open("wb") as out,
            tqdm(
                total=total, unit="B", unit_scale=True, desc=f"download {name}"
            ) as bar,
        ):
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                bar.update(len(chunk))
    part.rename(dest)
    return dest


def unpack(archive: Path, cache_dir: Path) -> Path:
    """Unpack a zip, and every zip inside it, once; return the unpacked directory."""
    target = cache_dir / "unpacked" / _file_key(archive)
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".unpack-"))
    try:
        _extract(archive, tmp)
        # Inner zips unpack beside themselves, as `unzip` run there would, and are
        # then deleted: the copy is ours, and BIRD's inner zips are large.
        while inner := [z for z in walk_files(tmp) if _is_zip_name(z)]:
            for nested in inner:
                _extract(nested, nested.parent)
                nested.unlink()
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def walk_files(root: Path) -> Iterator[Path]:
    """Every file under ``root``, without macOS resource-fork junk, sorted."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != MACOS_JUNK_DIR)
        for name in sorted(files):
            if not name.startswith(MACOS_JUNK_PREFIX):
                yield Path(folder) / name


def fingerprint(files: Iterable[Path]) -> str:
    """Paths, sizes and modification times of the files a build reads.

    Cheap (no file is read) and enough to tell a changed source: a copied,
    unpacked or edited file gets a new size or modification time.
    """
    digest = hashlib.sha256()
    for path in sorted({Path(p).resolve() for p in files}):
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _file_key(path: Path) -> str:
    stat = path.stat()
    text = f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _is_zip_name(path: Path) -> bool:
    return path.suffix.lower() == ".zip" and zipfile.is_zipfile(path)


def _extract(archive: Path, dest: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        members = [
            m
            for m in zf.namelist()
            if MACOS_JUNK_DIR not in PurePosixPath(m).parts
            and not PurePosixPath(m).name.startswith(MACOS_JUNK_PREFIX)
        ]
        size = sum(zf.getinfo(m).file_size for m in members)
        with tqdm(
            total=size, unit="B", unit_scale=True, desc=f"unzip {archive.name}"
        ) as bar:
            for member in members:
                zf.extract(member, dest)
                bar.update(zf.getinfo(member).file_size)
