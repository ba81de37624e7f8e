"""OpenEnv's task API over every built dataset: the public face of each question.

The server serves it under ``/sql_env/`` (``splits``, ``num_tasks``, ``task``,
``tasks``, ``task_range``); training against a server reads its questions from it.
Splits are named ``dataset/split``; the default dataset's are also reachable by
their bare names (``dev``, ``train``). A task never carries gold data.
"""

from pathlib import Path
from typing import Any

from sql_env.server.question_bank import Question, load_bank


def playable_splits(data_dir: Path, datasets: list[str]) -> list[str]:
    """``dataset/split`` for every split with playable questions."""
    splits = []
    for dataset in datasets:
        bank = load_bank(data_dir, dataset)
        splits += [f"{dataset}/{s}" for s in bank.splits if bank.eligible(s)]
    return splits


def tasks_of(
    data_dir: Path, datasets: list[str], default: str, split: str
) -> list[Question]:
    """Playable questions of ``dataset/split`` or of the default dataset's split.

    Raises:
        ValueError: No such dataset or split.
    """
    dataset, _, name = split.rpartition("/")
    dataset = dataset or default
    known = playable_splits(data_dir, datasets)
    if dataset not in datasets:
        raise ValueError(f"Unknown dataset {dataset[:60]!r}; splits: {known}.")
    bank = load_bank(data_dir, dataset)
    if name not in bank.splits:
        raise ValueError(f"Unknown split {split[:60]!r}; splits: {known}.")
    return bank.eligible(name)


def task_spec(question: Question, index: int) -> dict[str, Any]:
    return {
        "id": question.id,
        "index": index,
        "dataset": question.dataset,
        "split": question.split,
        "db_id": question.db_id,
        "question": question.question,
        "evidence": question.evidence,
        "difficulty": question.difficulty,
    }
