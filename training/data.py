"""Which questions a run uses: split, database subset, difficulty, sample, order.

Evaluation, SFT data and GRPO all pick their questions here, from the built
question bank (``make data``) or, when training against a server, from the
server's task API (``POST /sql_env/tasks``: every playable question's id, split,
database and difficulty, never its gold data), so a run against a Space needs
no local data. Named database subsets come from ``data/db_list.json``, which
ships with the package.
"""

import json
import random
import shutil
import subprocess
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from sql_env.server.question_bank import (
    DEFAULT_DATA_DIR,
    SPIDER_LEVELS,
    Question,
    QuestionBank,
    list_datasets,
    load_bank,
)

DB_LIST_FILE = "db_list.json"
# openenv.yaml's name: OpenEnv serves the task API under /<name>/.
TASK_API_ENV_NAME = "sql_env"
TASK_API_TIMEOUT_S = 60.0
# Where the notebook clones SQLENV_SOURCE (its install cell uses the same name).
SOURCE_CLONE_DIR = Path("sqlenv")
SQLITE_MAGIC = b"SQLite format 3\x00"


class Task(Protocol):
    """What a training row needs of a question (a bank ``Question`` has it)."""

    id: str
    split: str
    db_id: str
    difficulty: str


T = TypeVar("T", bound=Task)


@dataclass(frozen=True)
class ServerTask:
    """One playable question as the server's task API describes it."""

    id: str
    index: int
    split: str
    db_id: str
    question: str
    difficulty: str


def fetch_tasks(
    env_url: str, split: str, timeout_s: float = TASK_API_TIMEOUT_S
) -> list[ServerTask]:
    """Every playable question of ``split`` on a SQLEnv server.

    Args:
        env_url: Base URL of the server (``https://USER-sql-env.hf.space``).
        split: ``"train"`` or ``"dev"``.
        timeout_s: Seconds to wait for the answer.

    Returns:
        The server's tasks, in its order.

    Raises:
        urllib.error.URLError: The server cannot be reached or refused.
    """
    request = urllib.request.Request(
        f"{env_url.rstrip('/')}/{TASK_API_ENV_NAME}/tasks",
        data=json.dumps({"split": split}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        tasks = json.load(response)["tasks"]
    return [
        ServerTask(
            id=t["id"],
            index=t["index"],
            split=t["split"],
            db_id=t["db_id"],
            question=t["question"],
            difficulty=t["difficulty"],
        )
        for t in tasks
    ]


def has_data(data_dir: Path) -> bool:
    """True when ``data_dir`` holds a built question bank."""
    return bool(list_datasets(Path(data_dir)))


def data_from_source(
    source: str, clone_dir: Path = SOURCE_CLONE_DIR, data_dir: Path | None = None
) -> Path:
    """The built data: ``data_dir``, the package's, or a clone of ``source``'s.

    The notebook's ``SQLENV_SOURCE`` is a git repository holding the package
    and the built data (the Space's repository, ``git+https://...``); it is
    cloned once into ``clone_dir``. Spaces keep binary files in Git LFS: the
    clone pulls them when ``git lfs`` is installed and fails clearly when the
    databases are still LFS pointers.

    Args:
        source: ``git+URL`` (or a plain git URL) of SQLEnv's source.
        clone_dir: Where to clone it.
        data_dir: A data directory to use as it is (None: find one).

    Returns:
        A directory with a built question bank and its databases.

    Raises:
        FileNotFoundError: The source holds no built data.
        RuntimeError: The databases are Git LFS pointers (no ``git lfs``).
    """
    if data_dir is not None:
        return Path(data_dir)
    if has_data(DEFAULT_DATA_DIR):
        return DEFAULT_DATA_DIR
    clone_dir = Path(clone_dir)
    if not clone_dir.exists():
        url = source.removeprefix("git+")
        subprocess.run(
            ["git", "clone", "--depth", "1", url, str(clone_dir)], check=True
        )
    if shutil.which("git-lfs"):
        subprocess.run(["git", "-C", str(clone_dir), "lfs", "pull"], check=True)
    found = clone_dir / "data"
    if not has_data(found):
        raise FileNotFoundError(f"{source} holds no built data under data/.")
    bank = load_bank(found)
    sample = bank.db_path(bank.eligible("dev")[0].db_id)
    with sample.open("rb") as handle:
        if handle.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
            raise RuntimeError(
                f"{sample} is not a SQLite file (a Git LFS pointer?): install "
                "git-lfs (apt-get install git-lfs) and run `git lfs pull` in "
                f"{clone_dir}."
            )
    return found


def resolve_db_ids(
    spec: str | None, data_dir: Path = DEFAULT_DATA_DIR
) -> list[str] | None:
    """Database ids from a subset name in ``data/db_list.json`` or a comma list.

    Args:
        spec: A subset name (e.g. ``"seed10"``), ``"db_a,db_b"``, or None/"" for
            every database.
        data_dir: Data directory holding ``db_list.json``.

    Returns:
        The database ids, or None for no restriction.

    Raises:
        ValueError: ``spec`` names no subset and contains no comma-separated ids.
    """
    if not spec:
        return None
    subsets = _db_subsets(Path(data_dir) / DB_LIST_FILE)
    if spec in subsets:
        return list(subsets[spec])
    ids = [part.strip() for part in spec.split(",") if part.strip()]
    if len(ids) > 1 or (ids and not subsets):
        return ids
    known = ", ".join(sorted(subsets)) or "none"
    raise ValueError(
        f"Unknown database subset {spec!r}. Subsets in {DB_LIST_FILE}: {known}; "
        "or pass database ids separated by commas."
    )


def _db_subsets(path: Path) -> dict[str, list[str]]:
    if not path.is_file():
        return {}
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw = raw.get("subsets", raw)
    return {name: ids for name, ids in raw.items() if isinstance(ids, list)}


def parse_difficulties(spec: str | None) -> list[str] | None:
    """``"easy,medium"`` to ``["easy", "medium"]``; None/"" means all levels.

    Raises:
        ValueError: A level is not one of Spider's four.
    """
    if not spec:
        return None
    levels = [part.strip() for part in spec.split(",") if part.strip()]
    unknown = [level for level in levels if level not in SPIDER_LEVELS]
    if unknown:
        raise ValueError(
            f"Unknown difficulty {unknown[0]!r}; "
            f"choose from {', '.join(SPIDER_LEVELS)}."
        )
    return levels


def select_questions(
    bank: QuestionBank,
    split: str,
    *,
    db_ids: list[str] | None = None,
    difficulties: list[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    curriculum: bool = False,
) -> list[Question]:
    """Non-excluded questions of a split in the bank (see :func:`select_tasks`)."""
    return select_tasks(
        bank.eligible(split),
        db_ids=db_ids,
        difficulties=difficulties,
        limit=limit,
        seed=seed,
        curriculum=curriculum,
        label=split,
    )


def select_tasks(
    tasks: Sequence[T],
    *,
    db_ids: list[str] | None = None,
    difficulties: list[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    curriculum: bool = False,
    label: str = "",
) -> list[T]:
    """Playable questions, filtered, sampled and ordered.

    Args:
        tasks: Bank questions of one split, or the server's tasks.
        db_ids: Keep only these databases (None: all).
        difficulties: Keep only these difficulty levels (None: all).
        limit: Keep a seeded random sample of this many (None: all).
        seed: Seed for the sample and the shuffle.
        curriculum: Order easy -> medium -> hard -> extra (shuffled within a
            level) instead of fully shuffled.
        label: The split's name, for the error message.

    Returns:
        The selected questions.

    Raises:
        ValueError: Nothing is left after filtering.
    """
    questions = list(tasks)
    if db_ids is not None:
        wanted = set(db_ids)
        questions = [q for q in questions if q.db_id in wanted]
    if difficulties is not None:
        questions = [q for q in questions if q.difficulty in difficulties]
    if not questions:
        raise ValueError(
            f"No eligible {label} questions for databases={db_ids} "
            f"difficulties={difficulties}."
        )
    rng = random.Random(seed)
    questions = list(questions)
    rng.shuffle(questions)
    if limit is not None:
        questions = questions[:limit]
    if curriculum:
        questions.sort(key=lambda q: SPIDER_LEVELS.index(q.difficulty))
    return questions


@dataclass
class QuestionArguments:
    """The question-selection options every script shares (a dataclass base)."""

    db_subset: str | None = field(
        default=None,
        metadata={"help": "Subset name from data/db_list.json, or db ids a,b,c."},
    )
    difficulty: str | None = field(
        default=None, metadata={"help": "Spider levels to keep, e.g. easy,medium."}
    )
    data_dir: Path = field(
        default=DEFAULT_DATA_DIR, metadata={"help": "Built data directory."}
    )

    def questions(
        self,
        split: str,
        limit: int | None,
        seed: int,
        curriculum: bool = False,
        env_url: str | None = None,
    ) -> list[Task]:
        """The selected questions of ``split`` (see :func:`select_tasks`).

        With ``env_url`` they come from the server's task API, not the local
        bank, and database subsets from the package's ``db_list.json``.
        """
        if env_url:
            tasks: Sequence[Task] = fetch_tasks(env_url, split)
            db_list_dir = DEFAULT_DATA_DIR
        else:
            tasks = load_bank(self.data_dir).eligible(split)
            db_list_dir = self.data_dir
        return select_tasks(
            tasks,
            db_ids=resolve_db_ids(self.db_subset, db_list_dir),
            difficulties=parse_difficulties(self.difficulty),
            limit=limit,
            seed=seed,
            curriculum=curriculum,
            label=split,
        )
