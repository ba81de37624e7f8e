"""Which question an episode plays: the reset arguments, checked, and the draw.

``reset``'s arguments arrive from any transport (a WebSocket frame, an HTTP
body, a TRL dataset row) as a dict; ``ResetOptions`` checks their types, so a
wrong one is a clear ``ValueError`` (a 4xx or an error frame), and
``choose_question`` finds the dataset, split, database and difficulty they name
or samples among them.
"""

import random
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from sql_env.models import AnswerMode, RewardMode, SchemaMode
from sql_env.server.question_bank import Question, QuestionBank, load_bank

MAX_EPISODE_ID_CHARS = 200
# The official execution-accuracy rule of each dataset for answers by SQL; any
# other dataset (a custom one) is scored by Spider's.
EXECUTION_RULES = {"bird": "bird"}


class ResetOptions(BaseModel):
    """The arguments of ``reset``, type-checked: a wrong type is a clear error."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    seed: int | None = None
    episode_id: str | None = Field(default=None, max_length=MAX_EPISODE_ID_CHARS)
    question_id: str | None = Field(default=None, max_length=200)
    dataset: str | None = Field(default=None, max_length=100)
    split: str = Field(default="train", max_length=50)
    db_id: str | None = Field(default=None, max_length=200)
    reward_mode: RewardMode = "binary"
    difficulty: str | None = Field(
        default=None,
        max_length=50,
        validation_alias=AliasChoices("difficulty", "hardness"),
    )
    index: int | None = None
    schema_mode: SchemaMode = Field(
        default="hidden", validation_alias=AliasChoices("schema", "schema_mode")
    )
    answer_mode: AnswerMode = Field(
        default="value", validation_alias=AliasChoices("answer", "answer_mode")
    )
    evidence: bool = True


def reset_options(arguments: dict[str, Any]) -> ResetOptions:
    try:
        return ResetOptions.model_validate(arguments)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]) or "arguments"
            if error["type"] == "extra_forbidden":
                problems.append(f"unknown reset argument {name!r}")
            else:
                problems.append(f"{name}: {error['msg']}")
        raise ValueError(
            f"Bad reset arguments: {'; '.join(problems)}. Valid: seed (int), "
            "episode_id, question_id, dataset, split, db_id, difficulty (strings), "
            "reward_mode ('binary' or 'shaped'), schema ('hidden' or 'given'), "
            "answer ('value' or 'sql'), evidence (bool), index (int)."
        ) from None


def execution_rule(dataset: str) -> str:
    """The official rule that scores a dataset's answers by SQL."""
    return EXECUTION_RULES.get(dataset, "spider")


def choose_bank(
    data_dir: Path, datasets: list[str], default: str, options: ResetOptions
) -> QuestionBank:
    """The bank of the requested dataset (named, or the question id's)."""
    dataset = options.dataset
    if options.question_id is not None:
        named = options.question_id.split("/", 1)[0]
        if dataset is not None and dataset != named:
            raise ValueError(
                f"question_id {options.question_id!r} is not in dataset {dataset!r}."
            )
        dataset = named if named in datasets else dataset
    dataset = dataset or default
    if dataset not in datasets:
        raise ValueError(
            f"Unknown dataset {dataset[:60]!r}; built here: {', '.join(datasets)} "
            "(run `make data DATASET=...`)."
        )
    return load_bank(data_dir, dataset)


def choose_question(
    bank: QuestionBank, options: ResetOptions, rng: random.Random
) -> Question:
    """The named question, or one drawn from those the options allow.

    Raises:
        ValueError: Nothing matches, saying what the valid choices are.
    """
    if options.question_id is not None:
        try:
            question = bank.get(options.question_id)
        except KeyError:
            raise ValueError(
                f"Unknown question_id {options.question_id!r}; ids look like "
                "'spider/dev/0' or 'spider/train/12'."
            ) from None
        if question.excluded is not None:
            raise ValueError(
                f"Question {question.id} is excluded from play "
                f"({question.excluded.split(':')[0]}); see the build report."
            )
        return question
    split, db_id, difficulty = options.split, options.db_id, options.difficulty
    if split not in bank.splits:  # a copy of a short tuple
        raise ValueError(
            f"Unknown split {split[:60]!r} of {bank.dataset}; use one of "
            f"{', '.join(bank.splits)}."
        )
    if difficulty is not None and difficulty not in bank.levels:
        raise ValueError(
            f"Unknown difficulty {difficulty[:60]!r} of {bank.dataset}; use one "
            f"of {', '.join(bank.levels)}."
        )
    if db_id is not None:
        homes = bank.splits_of(db_id)
        if not homes:
            raise ValueError(
                f"Unknown db_id {db_id[:60]!r}; split {split!r} has: "
                f"{', '.join(bank.db_ids(split))}."
            )
        if split not in homes:
            raise ValueError(
                f"Database {db_id!r} belongs to split(s) {', '.join(homes)}, "
                f"not {split!r}; pass split={homes[0]!r}."
            )
    pool = bank.eligible(split, db_id=db_id, difficulty=difficulty)
    if not pool:
        raise ValueError(
            f"No playable questions for split={split!r}, "
            f"db_id={db_id!r}, difficulty={difficulty!r}."
        )
    if options.index is not None:
        if not 0 <= options.index < len(pool):
            raise ValueError(f"index {options.index} out of range 0..{len(pool) - 1}.")
        return pool[options.index]
    return pool[rng.randrange(len(pool))]
