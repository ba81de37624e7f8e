# /// script
# requires-python = ">=3.11"
# dependencies = ["openenv>=0.10,<0.11"]
# ///
"""Write the exact tree ``openenv push`` uploads to a Hugging Face Space, without a Hub.

``openenv push`` has no dry run: it checks the layout, copies the environment to a
temporary directory (without dotfiles, caches and the ``--exclude`` patterns, with
``server/Dockerfile`` moved to the root) and uploads that copy. This script runs the
real command, ``openenv push --exclude .dockerignore``, with ``HF_ENDPOINT`` pointing at
a stand-in for the Hub on 127.0.0.1 that accepts the upload and writes the files it
receives to ``--out``. What lands there is what a Space would receive, byte for byte,
and no OpenEnv internals are imported. The staged tree bundles the built databases and
question bank: run ``make data`` first.

    make stage                                   # writes build/space/
    make stage SPACE_DIR=/tmp/space
    python scripts/stage_space.py --out /tmp/space
    docker build -t sql-env build/space          # what Hugging Face builds

To upload for real, run ``openenv push --exclude .dockerignore`` (``make push``).
"""

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import sql_env

REPO_ROOT = Path(sql_env.__file__).resolve().parent
REQUIRED_DATA = ("data/spider/bank.sqlite", "data/spider/report.json")
HUB_USER = "local"
# Hub routes the upload uses (huggingface_hub's HTTP API, legacy non-Xet upload).
SPACE_ROUTE = re.compile(r"/api/spaces/(?P<repo>[^/]+/[^/]+)/(?P<op>preupload|commit)/")


@dataclass
class Args:
    out: Path = field(
        default=REPO_ROOT / "build" / "space",
        metadata={"help": "Directory to write the staged Space to (replaced)."},
    )
    exclude: str = field(
        default=".dockerignore",
        metadata={
            "help": "Ignore file for `openenv push --exclude`; '' for plain push."
        },
    )


def parse_args(argv: list[str] | None = None) -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for f in fields(Args):
        kind = Path if f.name == "out" else str
        parser.add_argument(
            f"--{f.name}", type=kind, default=f.default, help=f.metadata["help"]
        )
    return Args(**vars(parser.parse_args(argv)))


class LocalHub(ThreadingHTTPServer):
    """The few Hub routes ``openenv push`` calls; the committed files go to ``tree``.

    Every file is accepted as a regular (non-LFS) upload, so the commit carries each
    file's bytes. A route the Hub stand-in does not know is refused and recorded in
    ``refused``, so a changed upload protocol fails loudly instead of staging nothing.
    """

    def __init__(self, tree: Path) -> None:
        super().__init__(("127.0.0.1", 0), _HubHandler)
        self.tree = tree
        self.commits: list[str] = []
        self.refused: list[str] = []

    @property
    def endpoint(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def write_commit(self, ndjson: bytes) -> str:
        """Write the files of one commit payload under ``tree``; returns a commit id.

        Raises:
            ValueError: The payload names a path outside the tree or an LFS file.
        """
        for line in ndjson.splitlines():
            item = json.loads(line)
            if item["key"] == "header":
                continue
            if item["key"] != "file" or item["value"].get("encoding") != "base64":
                raise ValueError(f"unexpected commit operation {item['key']!r}")
            relative = PurePosixPath(item["value"]["path"])
            if relative.is_absolute() or ".." in relative.parts:
                raise ValueError(f"path outside the Space: {relative}")
            target = self.tree.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(base64.b64decode(item["value"]["content"]))
        oid = hashlib.sha1(ndjson).hexdigest()
        self.commits.append(oid)
        return oid


class _HubHandler(BaseHTTPRequestHandler):
    server: LocalHub

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: push prints its own progress."""

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/api/whoami-v2":
            self._reply(200, {"type": "user", "name": HUB_USER, "fullname": HUB_USER})
        else:
            self._refuse()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = urlsplit(self.path).path
        endpoint = self.server.endpoint
        if path == "/api/repos/create":
            request = json.loads(body)
            repo = f"{request.get('organization') or HUB_USER}/{request['name']}"
            self._reply(200, {"url": f"{endpoint}/spaces/{repo}"})
        elif path == "/api/validate-yaml":
            self._reply(200, {"errors": [], "warnings": []})
        elif match := SPACE_ROUTE.match(path):
            if match["op"] == "preupload":
                files = [
                    {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                    for f in json.loads(body)["files"]
                ]
                self._reply(200, {"files": files})
                return
            try:
                oid = self.server.write_commit(body)
            except (ValueError, KeyError) as exc:
                self.server.refused.append(f"commit: {exc}")
                self._reply(400, {"error": str(exc)})
                return
            url = f"{endpoint}/spaces/{match['repo']}/commit/{oid}"
            self._reply(
                200, {"commitUrl": url, "commitOid": oid, "pullRequestUrl": None}
            )
        else:
            self._refuse()

    def _refuse(self) -> None:
        self.server.refused.append(f"{self.command} {self.path}")
        self._reply(501, {"error": f"the local Hub does not serve {self.path}"})

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def local_hub(tree: Path) -> Iterator[LocalHub]:
    """Serve a :class:`LocalHub` writing to ``tree`` in a thread for the block."""
    hub = LocalHub(tree)
    thread = threading.Thread(target=hub.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        hub.shutdown()
        hub.server_close()
        thread.join()


def push_to(
    hub: LocalHub, env_dir: Path, exclude: str | None
) -> subprocess.CompletedProcess:
    """Run ``openenv push`` on ``env_dir`` against ``hub``; returns the finished run.

    The run is isolated from the user's Hugging Face login and cache: it gets its own
    ``HF_HOME``, a placeholder token and Xet disabled (the stand-in speaks the plain
    upload protocol only).
    """
    with tempfile.TemporaryDirectory(prefix="stage-space-hf-") as hf_home:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("HF_")},
            "HF_ENDPOINT": hub.endpoint,
            "HF_HOME": hf_home,
            "HF_TOKEN": "hf_local_stand_in",
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "NO_COLOR": "1",
            "COLUMNS": "200",  # rich wraps error boxes at the terminal width
        }
        command = [sys.executable, "-m", "openenv.cli", "push", str(env_dir)]
        command += ["--repo-id", f"{HUB_USER}/sql_env"]
        command += ["--exclude", exclude] if exclude else []
        return subprocess.run(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )


def stage(
    out: Path, exclude: str | None = ".dockerignore", env_dir: Path = REPO_ROOT
) -> str:
    """Write the tree ``openenv push`` would upload from ``env_dir`` to ``out``.

    Args:
        out: Where the tree goes (replaced).
        exclude: The ignore file for ``--exclude``; ``None`` runs plain push.
        env_dir: The environment to push.

    Returns:
        The output of ``openenv push``.

    Raises:
        SystemExit: The data is not built, ``out`` holds ``env_dir`` or another
            non-empty directory than a staged Space, or push failed (its output is in
            the message).
    """
    missing = [p for p in REQUIRED_DATA if not (env_dir / p).is_file()]
    if missing or not any((env_dir / "data").glob("*/databases/*/*.sqlite")):
        raise SystemExit("No built data to bundle: run `make data` first.")
    out = out.resolve()
    if env_dir.resolve().is_relative_to(out):
        raise SystemExit(f"Refusing to stage into {out}: it holds {env_dir}.")
    if out.is_dir() and any(out.iterdir()) and not (out / "openenv.yaml").is_file():
        raise SystemExit(f"Refusing to replace {out}: it is not a staged Space.")
    if out.exists():
        shutil.rmtree(out)  # before push copies env_dir, in case out lies inside it
    with tempfile.TemporaryDirectory(prefix="stage-space-") as scratch:
        tree = Path(scratch) / "space"
        with local_hub(tree) as hub:
            run = push_to(hub, env_dir, exclude)
        output = run.stdout + run.stderr
        if run.returncode != 0 or len(hub.commits) != 1 or hub.refused:
            raise SystemExit(
                f"`openenv push` exited {run.returncode} after {len(hub.commits)} "
                f"commit(s); the local Hub refused {hub.refused}.\n{output}"
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(tree, out)
    return output


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print("openenv push to a local stand-in for the Hub (nothing leaves here):")
    print(stage(args.out, args.exclude), end="")
    files = [p for p in args.out.rglob("*") if p.is_file()]
    size_mb = sum(p.stat().st_size for p in files) / 1e6
    print(f"Staged {len(files)} files ({size_mb:.1f} MB) in {args.out}")


if __name__ == "__main__":
    main()
