"""Warm-start data from gold SQL, and an optional SFT pass with TRL's SFTTrainer.

Each example is a whole oracle episode played through :class:`SQLToolEnv`
(DESCRIBE the gold query's tables, QUERY it, ANSWER its rows), so the messages,
tool calls and tool results are exactly those a GRPO rollout produces, rendered
with the same tool schema. A small model that has seen them emits well-formed
tool calls from its first GRPO step.
"""

import json
from collections.abc import Iterable
from pathlib import Path

from datasets import Dataset, Features, Json, List, Value
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl import SFTConfig, SFTTrainer

from sql_env.server.question_bank import Question
from sql_env.training.environment import SQLToolEnv, tool_schemas
from sql_env.training.rollout import OraclePolicy, run_episode

# Each message is stored as JSON: Arrow would otherwise merge the argument dicts
# of different tools into one struct and hand back {"sql": None, ...} keys.
SFT_FEATURES = Features(
    {
        "messages": List(Json()),
        "tools": Value("string"),
        "question_id": Value("string"),
        "db_id": Value("string"),
        "hardness": Value("string"),
    }
)


def sft_dataset(
    questions: Iterable[Question],
    data_dir: Path | None = None,
    env_url: str | None = None,
    max_answer_rows: int | None = 20,
) -> Dataset:
    """Play the oracle on each question and keep the successful conversations.

    Args:
        questions: Questions to turn into trajectories (train split).
        data_dir: Data directory (question bank and databases).
        env_url: Play over a SQLEnv server instead of in-process.
        max_answer_rows: Skip questions whose gold result has more rows (their
            answers would dominate the sequence); None keeps all.

    Returns:
        A dataset with ``messages`` (the chat), ``tools`` (JSON tool schemas),
        ``question_id``, ``db_id`` and ``hardness``.
    """
    oracle = OraclePolicy(data_dir)
    tools = json.dumps(tool_schemas())
    rows = []
    with SQLToolEnv(data_dir, env_url) as env:
        for question in questions:
            if (
                max_answer_rows is not None
                and len(question.gold_rows) > max_answer_rows
            ):
                continue
            episode = run_episode(env, oracle, question)
            if not episode.success:
                continue
            rows.append(
                {
                    "messages": episode.messages,
                    "tools": tools,
                    "question_id": question.id,
                    "db_id": question.db_id,
                    "hardness": question.hardness,
                }
            )
    return Dataset.from_list(rows, features=SFT_FEATURES)


def run_sft(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    dataset: Dataset,
    config: SFTConfig,
) -> PreTrainedModel:
    """Fine-tune on the assistant turns of the warm-start conversations.

    Args:
        model: The chat model (trained in place).
        tokenizer: Its tokenizer; TRL patches in a training template with
            generation markers for the assistant-only loss.
        dataset: From :func:`sft_dataset` (or loaded from disk).
        config: SFT settings; ``assistant_only_loss`` should stay True so tool
            results and prompts are not learned.

    Returns:
        The trained model.
    """
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=dataset.select_columns(["messages", "tools"]),
        processing_class=tokenizer,
    )
    trainer.train()
    return trainer.model
