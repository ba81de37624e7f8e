"""The text an agent sees: system prompt, question block and tool results.

GRPO training, the SFT warm-start data and the ``llm`` evaluation policy all build
their conversations from these functions, so a model is evaluated on exactly the
format it was trained on. The tool schema itself comes from the docstrings of
:class:`sql_env.training.environment.SQLToolEnv` (see ``tool_schemas`` there).

What an episode asks for (the tools, the answer format of its settings, the
budget) is the environment's contract, the reset observation's
``instructions``; the question block quotes it, followed by what the settings
show: the schema when given, the evidence when shown. The system prompt only
says how the instructions' action names map to the tools.
"""

import json
from typing import Any

from sql_env.models import SQLObservation

SYSTEM_PROMPT = (
    "You answer questions about SQLite databases with tools. Each question comes "
    "with instructions; their actions DESCRIBE, SAMPLE, QUERY and ANSWER are the "
    "tools describe, sample, query and answer."
)


def question_text(observation: SQLObservation) -> str:
    """The user message that starts an episode, from the observation ``reset`` returns.

    Args:
        observation: The observation returned by the environment's ``reset``.

    Returns:
        The episode's instructions, then the database, its tables (or its
        schema, when given), the question and its evidence (when shown).
    """
    lines = [observation.instructions, ""] if observation.instructions else []
    lines.append(f"Database: {observation.db_id}")
    if observation.db_schema:
        lines += ["Schema:", observation.db_schema]
    else:
        lines.append(f"Tables: {', '.join(observation.tables)}")
    lines.append(f"Question: {observation.question}")
    if observation.evidence:
        lines.append(f"Evidence: {observation.evidence}")
    return "\n".join(lines)


def tool_result_text(observation: SQLObservation) -> str:
    """What a tool call returns to the model: the result or the error, and the budget.

    Args:
        observation: The observation returned by the environment's ``step``.

    Returns:
        ``"Error: ..."`` or the result text, then the steps left or how the
        episode ended.
    """
    body = f"Error: {observation.error}" if observation.error else observation.result
    if observation.done:
        if observation.truncated:
            return f"{body}\nThe step budget is used up; the episode is over."
        return f"{body}\nThe episode is over."
    return f"{body}\nSteps left: {observation.budget_remaining}."


def initial_messages(observation: SQLObservation) -> list[dict[str, Any]]:
    """System and first user message of an episode, as the chat template takes them."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": question_text(observation)},
    ]


def training_prompt() -> list[dict[str, Any]]:
    """The dataset ``prompt`` of a GRPO row; ``reset`` appends the question text.

    TRL appends the string ``reset`` returns to the last user message, so the user
    message starts empty and ends up equal to :func:`question_text`.
    """
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": ""},
    ]


def answer_json(rows: Any) -> str:
    """Rows as the JSON text ``answer`` expects (``[[3]]``, ``[["a", 1]]``)."""
    return json.dumps([list(row) for row in rows], ensure_ascii=False)
