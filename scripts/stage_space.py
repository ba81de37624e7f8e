# /// script
# requires-python = ">=3.11"
# dependencies = ["openenv>=0.10,<0.11", "pyyaml"]
# ///
"""Stage the Hugging Face Space tree exactly as ``openenv push`` uploads it; push it.

``openenv push`` refuses a tree without a root ``client.py``, and SQLEnv's client is the
``client/`` package (a root ``client.py`` would be shadowed by it). This script runs
push's own code on the repository instead: ``_prepare_staging_directory`` (copies the
tree without dotfiles, caches and the patterns in ``.dockerignore``, moves
``server/Dockerfile`` to the root, enables the web interface, completes the README
front matter), then, with ``--push``, push's own Space creation and upload. The staged
tree includes the built databases and question bank: run ``make data`` first.

    make stage                                   # writes build/space/
    make push REPO_ID=my-name/sql_env            # stage, then upload (hf auth login)
    python -m sql_env.scripts.stage_space --out /tmp/space
    docker build -t sql-env build/space          # what Hugging Face builds
"""

import argparse
import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml
from huggingface_hub import HfApi
from openenv.cli.commands.push import (
    _apply_space_variables_and_secrets,
    _create_hf_space,
    _ensure_hf_authenticated,
    _load_ignore_patterns,
    _prepare_staging_directory,
    _should_exclude_path,
    _upload_to_hf_space,
)

import sql_env

REPO_ROOT = Path(sql_env.__file__).resolve().parent
REQUIRED_DATA = ("data/spider/bank.sqlite", "data/spider/report.json")


@dataclass
class Args:
    out: Path = field(
        default=REPO_ROOT / "build" / "space",
        metadata={"help": "Directory to write the staged Space to (replaced)."},
    )
    exclude: str = field(
        default=".dockerignore",
        metadata={"help": "Ignore file with extra patterns (as push --exclude)."},
    )
    no_interface: bool = field(
        default=False, metadata={"help": "Stage without the /web interface."}
    )
    push: bool = field(
        default=False, metadata={"help": "Upload the staged tree to a Space."}
    )
    repo_id: str | None = field(
        default=None,
        metadata={"help": "Space id, 'name' or 'owner/name' (default: you/<name>)."},
    )
    private: bool = field(default=False, metadata={"help": "Create a private Space."})


def parse_args(argv: list[str] | None = None) -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for f in fields(Args):
        flag = "--" + f.name.replace("_", "-")
        if f.type is bool:
            parser.add_argument(flag, action="store_true", help=f.metadata["help"])
        else:
            kind = Path if f.name == "out" else str
            parser.add_argument(
                flag, type=kind, default=f.default, help=f.metadata["help"]
            )
    return Args(**vars(parser.parse_args(argv)))


def stage(out: Path, exclude: str = ".dockerignore", interface: bool = True) -> str:
    """Write the Space tree ``openenv push`` would upload to ``out``.

    Returns:
        The environment name from ``openenv.yaml``.

    Raises:
        SystemExit: The data is not built, README.md is missing, or ``out`` would
            be copied into itself.
    """
    missing = [p for p in REQUIRED_DATA if not (REPO_ROOT / p).is_file()]
    databases = (REPO_ROOT / "data").glob("*/databases/*/*.sqlite")
    if missing or not any(databases):
        raise SystemExit("No built data to bundle: run `make data` first.")
    if not (REPO_ROOT / "README.md").is_file():
        raise SystemExit(
            "No README.md: the Space's front matter and the build need it."
        )
    env_name = yaml.safe_load((REPO_ROOT / "openenv.yaml").read_text())["name"]
    ignore = _load_ignore_patterns(REPO_ROOT, exclude)
    out = out.resolve()
    if out == REPO_ROOT or REPO_ROOT.is_relative_to(out):
        raise SystemExit(f"Refusing to stage into {out}: it holds the repository.")
    if out.is_relative_to(REPO_ROOT) and not _should_exclude_path(
        out.relative_to(REPO_ROOT), ignore
    ):
        raise SystemExit(f"{out} is inside the repository but not ignored by push.")
    if out.exists():
        shutil.rmtree(out)
    _prepare_staging_directory(
        REPO_ROOT, env_name, out, ignore_patterns=ignore, enable_interface=interface
    )
    return env_name


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    env_name = stage(args.out, args.exclude, interface=not args.no_interface)
    files = [p for p in args.out.rglob("*") if p.is_file()]
    size_mb = sum(p.stat().st_size for p in files) / 1e6
    print(f"Staged {len(files)} files ({size_mb:.1f} MB) in {args.out}")
    if not args.push:
        return
    username = _ensure_hf_authenticated()
    repo_id = args.repo_id or env_name
    if "/" not in repo_id:
        repo_id = f"{username}/{repo_id}"
    api = HfApi()
    ignore = _load_ignore_patterns(REPO_ROOT, args.exclude)
    _create_hf_space(repo_id, api, private=args.private)
    _upload_to_hf_space(repo_id, args.out, api, ignore, private=args.private)
    manifest = yaml.safe_load((REPO_ROOT / "openenv.yaml").read_text())
    variables = {str(k): str(v) for k, v in (manifest.get("variables") or {}).items()}
    _apply_space_variables_and_secrets(repo_id, variables, {}, api)
    print(f"Pushed: https://huggingface.co/spaces/{repo_id}")


if __name__ == "__main__":
    main()
