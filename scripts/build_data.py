# /// script
# requires-python = ">=3.11"
# dependencies = ["sqlglot>=26,<31", "tqdm>=4.66,<5"]
# ///
"""Build a dataset's question bank: Spider, BIRD, or your own databases.

    make data                                     # Spider (what `make serve` runs)
    make data DATASET=bird                        # BIRD's official dev.zip + train.zip
    make data DATASET=bird SOURCE=~/bird/dev.zip  # a directory, zip or URL
    make data DATASET=custom SOURCE=~/my_data     # questions.jsonl + SQLite files
    SPIDER_SOURCE=~/spider_data.zip make data
    python scripts/build_data.py --dataset custom --source DIR --name sales

Spider's default source is ``SPIDER_SOURCE``, else ``../shared/spider`` beside the
project when it exists, else the official download; BIRD's is its two official
zips. Each dataset goes to ``data/<name>/`` (``--name``, default the dataset's),
so several can be built side by side. The build is idempotent: an unchanged
source is not rebuilt (``--force`` rebuilds). docs/datasets.md describes each
layout.
"""

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sql_env.ingest.build import ADAPTERS, build
from sql_env.ingest.report import REPORT_MD, summary
from sql_env.ingest.sources import SourceError
from sql_env.server.question_bank import DEFAULT_DATA_DIR
from sql_env.training.cli import parse_args


@dataclass
class BuildArgs:
    dataset: Literal["spider", "bird", "custom"] = field(
        default="spider", metadata={"help": "Which adapter reads the source"}
    )
    source: list[str] = field(
        default_factory=list,
        metadata={"help": "Directories, zips or URLs (default: the dataset's own)"},
    )
    name: str | None = field(
        default=None, metadata={"help": "Dataset name (default: the adapter's)"}
    )
    data_dir: Path = field(
        default=DEFAULT_DATA_DIR, metadata={"help": "Where to write the data"}
    )
    force: bool = field(default=False, metadata={"help": "Rebuild even if current"})
    workers: int | None = field(
        default=None, metadata={"help": "Threads for the golds (default: CPUs)"}
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(BuildArgs, argv, __doc__.split("\n\n")[0])
    sources = [s for s in args.source if s.strip()]
    if not sources and args.dataset == "spider":
        sources = [s for s in [os.environ.get("SPIDER_SOURCE", "").strip()] if s]
    sources = sources or ADAPTERS[args.dataset].default_sources()
    print(f"{args.dataset} source: {', '.join(sources) or 'none given'}")
    try:
        result = build(
            args.dataset,
            sources,
            args.data_dir,
            name=args.name,
            force=args.force,
            workers=args.workers,
        )
    except (SourceError, ValueError) as exc:
        print(f"make data: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if not result.rebuilt:
        print(f"Question bank {result.folder.name} is up to date ({result.folder}).")
    print("\n".join(summary(result.report)))
    print(f"Report: {result.folder / REPORT_MD}")


if __name__ == "__main__":
    main()
