"""Which questions a run uses: dataset, split, database subset, difficulty, order.

Evaluation, SFT data and GRPO all pick their questions here, from a dataset's
built question bank (``make data``) or, when training against a server, from
the server's task API (``GET /sql_env/splits``: ``dataset/split`` names; ``POST
/sql_env/tasks``: every playable question's id, split, database, difficulty and
evidence, never its gold data), so a run against a Space needs no local data.
Splits and difficulty levels are checked against the dataset's own (a bank's
``splits`` and ``levels``; over a server, its splits and the levels its tasks
use). Named database subsets come from ``data/db_list.json``, which ships with
the package.
"""

import json
import random
import shutil
import subprocess
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sql_env.ingest.bird import LEVELS as BIRD_LEVELS
from sql_env.models import AnswerMode, SchemaMode
from sql_env.server.question_bank import (
    DEFAULT_DATA_DIR,
    DEFAULT_DATASET,
    SPIDER_LEVELS,
    Question,
    QuestionBank,
    list_datasets,
    load_bank,
)
from sql_env.training.settings import EpisodeSettings

DB_LIST_FILE = "db_list.json"
# openenv.yaml's name: OpenEnv serves the task API under /<name>/.
TASK_API_ENV_NAME = "sql_env"
TASK_API_TIMEOUT_S = 60.0
# Where the notebook clones SQLENV_SOURCE (its install cell uses the same name).
SOURCE_CLONE_DIR = Path("sqlenv")
SQLITE_MAGIC = b"SQLite format 3\x00"
# Level orders a dataset may use without saying so to a client of the task API:
# Spider's hardness (also a custom dataset's default), then BIRD's.
KNOWN_LEVELS = (*SPIDER_LEVELS, *BIRD_LEVELS)


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
    dataset: str
    split: str
    db_id: str
    question: str
    evidence: str
    difficulty: str


def _task_api(env_url: str, path: str, body: dict | None = None) -> Any:
    """GET (no body) or POST a task API route of a SQLEnv server; its JSON reply."""
    request = urllib.request.Request(
        f"{env_url.rstrip('/')}/{TASK_API_ENV_NAME}/{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=TASK_API_TIMEOUT_S) as response:
        return json.load(response)


def fetch_splits(env_url: str) -> list[str]:
    """The ``dataset/split`` names a SQLEnv server has playable questions in.

    Raises:
        urllib.error.URLError: The server cannot be reached or refused.
    """
    return [split["name"] for split in _task_api(env_url, "splits")]


def fetch_tasks(
    env_url: str, split: str, dataset: str = DEFAULT_DATASET
) -> list[ServerTask]:
    """Every playable question of a dataset's split on a SQLEnv server.

    Args:
        env_url: Base URL of the server (``https://USER-sql-env.hf.space``).
        split: A split of the dataset (``"train"``, ``"dev"``, ...).
        dataset: A dataset the server serves.

    Returns:
        The server's tasks, in its order.

    Raises:
        ValueError: The server has no such split (the message lists its splits).
        urllib.error.URLError: The server cannot be reached or refused.
    """
    name = f"{dataset}/{split}"
    splits = fetch_splits(env_url)
    if name not in splits:
        raise ValueError(
            f"The server at {env_url} has no split {name!r}; it serves "
            f"{', '.join(splits) or 'none'}."
        )
    tasks = _task_api(env_url, "tasks", {"split": name})["tasks"]
    return [
        ServerTask(
            id=t["id"],
            index=t["index"],
            dataset=t.get("dataset", dataset),
            split=t["split"],
            db_id=t["db_id"],
            question=t["question"],
            evidence=t.get("evidence", ""),
            difficulty=t["difficulty"],
        )
        for t in tasks
    ]


def order_levels(seen: Iterable[str], known: Sequence[str] = ()) -> list[str]:
    """The difficulty levels in ``seen``, easiest first.

    A dataset's own order (``known``: its bank's ``levels``) comes first, then
    the orders SQLEnv's datasets use (``KNOWN_LEVELS``), then any other level
    in first-seen order; ``""`` (no level) comes last.

    >>> order_levels(["hard", "", "easy", "L2", "L1"])
    ['easy', 'hard', 'L2', 'L1', '']
    >>> order_levels(["L2", "L1"], known=["L1", "L2"])
    ['L1', 'L2']
    """
    present = dict.fromkeys(seen)
    order = [*known, *KNOWN_LEVELS, *present]
    ranked = [level for level in dict.fromkeys(order) if level in present and level]
    return ranked + ([""] if "" in present else [])


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


def parse_difficulties(spec: str | None, levels: Sequence[str]) -> list[str] | None:
    """``"easy,medium"`` to ``["easy", "medium"]``; None/"" means all levels.

    Args:
        spec: Levels separated by commas.
        levels: The dataset's levels (``QuestionBank.levels``).

    Raises:
        ValueError: A level is not one of ``levels``.
    """
    if not spec:
        return None
    wanted = [part.strip() for part in spec.split(",") if part.strip()]
    unknown = [level for level in wanted if level not in levels]
    if unknown:
        raise ValueError(
            f"Unknown difficulty {unknown[0]!r}; "
            f"choose from {', '.join(levels) or 'none (no levels)'}."
        )
    return wanted


def check_split(split: str, splits: Sequence[str], dataset: str) -> None:
    """Raise a ValueError naming the dataset's splits unless ``split`` is one."""
    if split not in splits:
        raise ValueError(
            f"Unknown split {split!r} of {dataset}; use one of {', '.join(splits)}."
        )


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
    """Non-excluded questions of a split in the bank (see :func:`select_tasks`).

    Raises:
        ValueError: ``split`` is not one of the bank's, or nothing is selected.
    """
    check_split(split, bank.splits, bank.dataset)
    return select_tasks(
        bank.eligible(split),
        db_ids=db_ids,
        difficulties=difficulties,
        limit=limit,
        seed=seed,
        curriculum=curriculum,
        levels=bank.levels,
        label=f"{bank.dataset}/{split}",
    )


def select_tasks(
    tasks: Sequence[T],
    *,
    db_ids: list[str] | None = None,
    difficulties: list[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    curriculum: bool = False,
    levels: Sequence[str] = (),
    label: str = "",
) -> list[T]:
    """Playable questions, filtered, sampled and ordered.

    Args:
        tasks: Bank questions of one split, or the server's tasks.
        db_ids: Keep only these databases (None: all).
        difficulties: Keep only these difficulty levels (None: all).
        limit: Keep a seeded random sample of this many (None: all).
        seed: Seed for the sample and the shuffle.
        curriculum: Order by difficulty, easiest first (shuffled within a
            level; see :func:`order_levels`) instead of fully shuffled.
        levels: The dataset's levels, easiest first (for the curriculum).
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
        order = order_levels((q.difficulty for q in questions), levels)
        questions.sort(key=lambda q: order.index(q.difficulty))
    return questions


@dataclass
class QuestionArguments:
    """The question and episode options every script shares (a dataclass base)."""

    dataset: str = field(
        default=DEFAULT_DATASET,
        metadata={"help": "Dataset: spider, bird or a custom name (make data)."},
    )
    schema: SchemaMode = field(
        default="hidden",
        metadata={"help": "hidden: explore the database; given: CREATE TABLEs shown."},
    )
    answer: AnswerMode = field(
        default="value",
        metadata={"help": "value: answer the rows; sql: answer one SELECT."},
    )
    evidence: bool = field(
        default=True, metadata={"help": "Show BIRD's evidence with the question."}
    )
    db_subset: str | None = field(
        default=None,
        metadata={"help": "Subset name from data/db_list.json, or db ids a,b,c."},
    )
    difficulty: str | None = field(
        default=None,
        metadata={"help": "Levels of the dataset to keep, e.g. easy,medium."},
    )
    data_dir: Path = field(
        default=DEFAULT_DATA_DIR, metadata={"help": "Built data directory."}
    )

    def settings(self) -> EpisodeSettings:
        """The episode settings these options ask for."""
        return EpisodeSettings(self.dataset, self.schema, self.answer, self.evidence)

    def questions(
        self,
        split: str,
        limit: int | None,
        seed: int,
        curriculum: bool = False,
        env_url: str | None = None,
    ) -> list[Task]:
        """The selected questions of the dataset's ``split`` (see :func:`select_tasks`).

        With ``env_url`` they come from the server's task API, not the local
        bank, and database subsets from the package's ``db_list.json``.

        Raises:
            ValueError: An unknown split or level of the dataset, or nothing left.
        """
        if env_url:
            tasks: Sequence[Task] = fetch_tasks(env_url, split, self.dataset)
            levels = order_levels(t.difficulty for t in tasks)
            db_list_dir = DEFAULT_DATA_DIR
        else:
            bank = load_bank(self.data_dir, self.dataset)
            check_split(split, bank.splits, self.dataset)
            tasks, levels = bank.eligible(split), list(bank.levels)
            db_list_dir = self.data_dir
        return select_tasks(
            tasks,
            db_ids=resolve_db_ids(self.db_subset, db_list_dir),
            difficulties=parse_difficulties(self.difficulty, levels),
            limit=limit,
            seed=seed,
            curriculum=curriculum,
            levels=levels,
            label=f"{self.dataset}/{split}",
        )

    def levels(self, env_url: str | None = None) -> list[str]:
        """The dataset's difficulty levels, easiest first (over a server: none)."""
        if env_url:
            return []
        return list(load_bank(self.data_dir, self.dataset).levels)
