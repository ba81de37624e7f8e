"""Warm-start data from gold SQL, and an SFT pass with TRL's SFTTrainer.

Each example is a whole oracle episode played through :class:`SQLToolEnv` in the
run's episode settings (DESCRIBE the gold query's tables when the schema is
hidden, QUERY it, ANSWER its rows or the gold SQL), so the messages, tool calls
and tool results are exactly those a GRPO rollout in those settings produces. For
training, each conversation is turned into the token ids and loss mask of the
GRPO rollout of the same trajectory (:mod:`sql_env.training.rendering`): same
chat template, same tool order, and the loss on exactly the tokens GRPO trains
(the assistant turns up to their end-of-turn token, not the newline after it,
the prompt or the tool results). ``tests/test_token_identity.py`` compares both
against a real GRPOTrainer. A small model that has seen them emits well-formed
tool calls from its first GRPO step.
"""

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset, Features, Json, List, Value
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback
from trl import SFTConfig, SFTTrainer

from sql_env.server.question_bank import Question
from sql_env.training.environment import SQLToolEnv, tool_schemas
from sql_env.training.rendering import ConversationRenderer
from sql_env.training.rollout import OraclePolicy, run_episode
from sql_env.training.settings import EpisodeSettings

logger = logging.getLogger(__name__)
# SFTTrainer builds its labels from this column of a pre-tokenized dataset.
MASK_COLUMN = "assistant_masks"

# Each message is stored as JSON: Arrow would otherwise merge the argument dicts
# of different tools into one struct and hand back {"sql": None, ...} keys.
SFT_FEATURES = Features(
    {
        "messages": List(Json()),
        "tools": Value("string"),
        "question_id": Value("string"),
        "db_id": Value("string"),
        "difficulty": Value("string"),
    }
)


def sft_dataset(
    questions: Iterable[Question],
    data_dir: Path | None = None,
    env_url: str | None = None,
    max_answer_rows: int | None = 20,
    settings: EpisodeSettings | None = None,
) -> Dataset:
    """Play the oracle on each question and keep the successful conversations.

    Args:
        questions: Questions to turn into trajectories (train split).
        data_dir: Data directory (question banks and databases).
        env_url: Play over a SQLEnv server instead of in-process.
        max_answer_rows: With answers by value, skip questions whose gold
            result has more rows (their answers would dominate the sequence);
            None keeps all.
        settings: The episode settings GRPO will train in (default: Spider,
            schema hidden, answers by value).

    Returns:
        A dataset with ``messages`` (the chat), ``tools`` (JSON tool schemas),
        ``question_id``, ``db_id`` and ``difficulty``.
    """
    settings = settings or EpisodeSettings()
    oracle = OraclePolicy(data_dir, settings.answer)
    tools = json.dumps(tool_schemas())
    row_cap = max_answer_rows if settings.answer == "value" else None
    rows = []
    with SQLToolEnv(data_dir, env_url, reset_settings=settings.reset_kwargs()) as env:
        for question in questions:
            if row_cap is not None and len(question.gold_rows) > row_cap:
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
                    "difficulty": question.difficulty,
                }
            )
    return Dataset.from_list(rows, features=SFT_FEATURES)


def tokenize_conversations(
    dataset: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    chat_template_kwargs: Mapping[str, Any] | None = None,
    max_length: int | None = None,
) -> Dataset:
    """Each conversation as the token ids and loss mask of its GRPO rollout.

    Args:
        dataset: From :func:`sft_dataset` (``messages`` and ``tools`` columns).
        tokenizer: The model's tokenizer.
        chat_template_kwargs: The ``chat_template_kwargs`` GRPO will use (e.g.
            ``{"enable_thinking": False}``): SFT must render the same way.
        max_length: Drop conversations longer than this many tokens (a cut one
            would lose its ``answer`` call); None keeps all.

    Returns:
        A dataset with ``input_ids`` and ``assistant_masks`` (1 where GRPO
        trains), which SFTTrainer takes as it is.
    """
    renderers: dict[str, ConversationRenderer] = {}

    def encode(row: dict[str, Any]) -> dict[str, list[int]]:
        tools = row["tools"]
        if tools not in renderers:
            renderers[tools] = ConversationRenderer(
                tokenizer, json.loads(tools), chat_template_kwargs
            )
        ids, mask = renderers[tools].conversation_ids(row["messages"])
        return {"input_ids": ids, MASK_COLUMN: mask}

    tokenized = dataset.map(encode, remove_columns=dataset.column_names)
    if max_length is None:
        return tokenized
    kept = tokenized.filter(lambda row: len(row["input_ids"]) <= max_length)
    if len(kept) < len(tokenized):
        logger.warning(
            "SFT: dropped %d of %d conversations longer than %d tokens",
            len(tokenized) - len(kept),
            len(tokenized),
            max_length,
        )
    return kept


def run_sft(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    dataset: Dataset,
    config: SFTConfig,
    chat_template_kwargs: Mapping[str, Any] | None = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> PreTrainedModel:
    """Fine-tune on the assistant turns of the warm-start conversations.

    Args:
        model: The chat model (trained in place).
        tokenizer: Its tokenizer.
        dataset: From :func:`sft_dataset` (or loaded from disk).
        config: SFT settings. ``max_length`` drops longer conversations rather
            than cutting them; ``assistant_only_loss`` must stay False: the
            mask comes from the GRPO rendering, and TRL's assistant mask would
            also train the newline after each end-of-turn token.
        chat_template_kwargs: The ``chat_template_kwargs`` GRPO will use.
        callbacks: Extra trainer callbacks.

    Returns:
        The trained model.

    Raises:
        ValueError: ``config.assistant_only_loss`` is set, or no conversation
            fits in ``config.max_length``.
    """
    if config.assistant_only_loss:
        raise ValueError(
            "run_sft builds the loss mask from the GRPO rendering; set "
            "assistant_only_loss=False."
        )
    tokenized = tokenize_conversations(
        dataset, tokenizer, chat_template_kwargs, config.max_length
    )
    if len(tokenized) == 0:
        raise ValueError(
            f"No SFT conversation fits in max_length={config.max_length} tokens."
        )
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=tokenized,
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )
    trainer.train()
    return trainer.model


def warm_start(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: Iterable[Question],
    config: SFTConfig,
    *,
    data_dir: Path | None = None,
    env_url: str | None = None,
    chat_template_kwargs: Mapping[str, Any] | None = None,
    settings: EpisodeSettings | None = None,
) -> int:
    """SFT on the oracle's trajectories of ``questions`` (bank questions).

    Args:
        model: The chat model (trained in place).
        tokenizer: Its tokenizer.
        questions: Train questions of the local bank (the oracle reads their
            gold SQL).
        config: SFT settings (``recipes.sft_config``).
        data_dir: Data directory (question bank and databases).
        env_url: Play the trajectories on a SQLEnv server instead.
        chat_template_kwargs: The ``chat_template_kwargs`` GRPO will use.
        settings: The episode settings GRPO will train in.

    Returns:
        The number of trajectories trained on.
    """
    dataset = sft_dataset(questions, data_dir, env_url, settings=settings)
    logger.info("SFT warm start: %d trajectories", len(dataset))
    run_sft(model, tokenizer, dataset, config, chat_template_kwargs)
    return len(dataset)
