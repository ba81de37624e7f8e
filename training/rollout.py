"""Play episodes through :class:`SQLToolEnv` with a policy, recording the chat.

A policy sees the conversation so far (the same messages GRPO builds: system
prompt, question, assistant tool calls, tool results) and returns the next
assistant message. The runner executes its tool calls on the environment exactly
as TRL's tool loop does, so an episode played here and a GRPO rollout produce the
same conversation format; the oracle's episodes are the SFT warm-start data.

Policies here need no torch: ``random`` (random valid actions) and ``oracle``
(DESCRIBE the tables the gold SQL uses unless the schema is given, QUERY the
gold, ANSWER its rows, or the gold SQL in episodes answered by SQL). The oracle
reads the question bank directly, which a baseline may do; nothing gold reaches
it through the environment. The ``llm`` policy is in ``llm_policy.py``; it learns
the answer format from the episode's instructions, as any agent would.
"""

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sql_env.models import AnswerMode, SQLObservation
from sql_env.server.question_bank import DEFAULT_DATA_DIR, load_bank
from sql_env.training.data import Task
from sql_env.training.environment import TOOL_NAMES, SQLToolEnv
from sql_env.training.prompts import SYSTEM_PROMPT, answer_json

Message = dict[str, Any]
# What the model says after its answer was accepted, so a rollout ends there.
FINAL_MESSAGE = "Done."
DEFAULT_MAX_TURNS = 10


class Policy(Protocol):
    """Chooses the next assistant message of an episode."""

    name: str

    def begin(self, observation: SQLObservation) -> None:
        """Called once per episode with the observation ``reset`` returned."""

    def act(self, messages: list[Message]) -> Message:
        """The next assistant message (with ``tool_calls`` to act, without to stop)."""


def tool_call(name: str, **arguments: Any) -> dict[str, Any]:
    """One tool call in the chat-template format (``{"type": "function", ...}``)."""
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def assistant_message(*calls: dict[str, Any], content: str = "") -> Message:
    message: Message = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = list(calls)
    return message


@dataclass
class Episode:
    """One played episode: outcome, counts, the answer and the whole conversation.

    ``sample`` numbers the episodes of one question when it is played several
    times; ``answer`` is the argument of the ANSWER that ended it, if any.
    """

    question_id: str
    db_id: str
    difficulty: str
    policy: str
    success: bool
    reward: float
    steps: int
    errors: int
    truncated: bool
    answered: bool
    messages: list[Message] = field(default_factory=list)
    sample: int = 0
    answer: str | None = None

    def to_record(self) -> dict[str, Any]:
        return asdict(self)


def run_tool_calls(env: SQLToolEnv, message: Message) -> list[Message]:
    """Execute an assistant message's tool calls; return the tool messages.

    An exception becomes the tool message ``str({"error": ...})``, as in TRL.
    """
    results = []
    for call in message.get("tool_calls") or []:
        function = call.get("function", {})
        name = function.get("name", "unknown")
        arguments = function.get("arguments") or {}
        try:
            if name not in TOOL_NAMES:
                raise ValueError(f"Tool {name} not found.")
            content = str(getattr(env, name)(**arguments))
        except Exception as exc:  # the model sees any tool failure as text
            content = str({"error": str(exc)})
        results.append({"role": "tool", "name": name, "content": content})
    return results


def run_episode(
    env: SQLToolEnv,
    policy: Policy,
    question: Task,
    max_turns: int = DEFAULT_MAX_TURNS,
    sample: int = 0,
) -> Episode:
    """Play one question to the end: ANSWER, budget, ``max_turns`` or no tool call.

    Args:
        env: The tool environment (in-process or over WebSocket), whose reset
            settings decide the episode's dataset, schema and answer format.
        policy: Chooses each assistant message.
        question: The question to play.
        max_turns: Assistant messages allowed (TRL's ``max_tool_calling_iterations``).
        sample: Which play of this question it is (recorded).

    Returns:
        The episode with its outcome and conversation.
    """
    text = env.reset(question_id=question.id, split=question.split)
    messages: list[Message] = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": text},
    ]
    policy.begin(env.observation)
    out_of_turns = True
    for _ in range(max_turns):
        message = policy.act(messages)
        messages.append(message)
        if not message.get("tool_calls"):
            out_of_turns = False
            break
        messages.extend(run_tool_calls(env, message))
        if env.done:
            messages.append(assistant_message(content=FINAL_MESSAGE))
            out_of_turns = False
            break
    final = env.observation
    return Episode(
        question_id=question.id,
        db_id=question.db_id,
        difficulty=question.difficulty,
        policy=policy.name,
        success=env.success,
        reward=env.get_reward(),
        steps=final.step_count,
        errors=env.error_count,
        truncated=final.truncated or (out_of_turns and not final.done),
        answered=final.answer_correct is not None,
        messages=messages,
        sample=sample,
        answer=env.submitted_answer,
    )


class OraclePolicy:
    """DESCRIBE the gold SQL's tables, QUERY the gold SQL, ANSWER its rows or itself.

    The tables are described only when the schema is hidden (the reset
    observation carries no ``db_schema``).

    Args:
        data_dir: Where the question banks are (read directly, not through
            the environment).
        answer: The episodes' answer format: ``"value"`` answers the gold rows
            as JSON, ``"sql"`` the gold SQL.
    """

    name = "oracle"

    def __init__(self, data_dir: Path | None = None, answer: AnswerMode = "value"):
        self._data_dir = data_dir or DEFAULT_DATA_DIR
        self._answer = answer
        self._plan: list[Message] = []

    def begin(self, observation: SQLObservation) -> None:
        dataset = observation.question_id.split("/", 1)[0]
        question = load_bank(self._data_dir, dataset).get(observation.question_id)
        by_lower = {name.lower(): name for name in observation.tables}
        tables = () if observation.db_schema else question.tables_used
        describe = [by_lower.get(t.lower(), t) for t in tables]
        final = (
            question.gold_sql
            if self._answer == "sql"
            else answer_json(question.gold_rows)
        )
        self._plan = [
            *(assistant_message(tool_call("describe", table_name=t)) for t in describe),
            assistant_message(tool_call("query", sql=question.gold_sql)),
            assistant_message(tool_call("answer", value=final)),
        ]

    def act(self, messages: list[Message]) -> Message:
        if not self._plan:
            return assistant_message(content=FINAL_MESSAGE)
        return self._plan.pop(0)


class RandomPolicy:
    """Random valid actions: look at random tables, run trivial queries, guess.

    Args:
        seed: Seed of the policy's own random generator.
        answer: The episodes' answer format: a guess is a one-value JSON
            answer (``"value"``) or a SELECT of that value (``"sql"``).
    """

    name = "random"

    def __init__(self, seed: int = 0, answer: AnswerMode = "value") -> None:
        self._rng = random.Random(seed)
        self._answer = answer
        self._tables: list[str] = []

    def begin(self, observation: SQLObservation) -> None:
        self._tables = list(observation.tables) or ["sqlite_master"]

    def act(self, messages: list[Message]) -> Message:
        table = self._rng.choice(self._tables)
        choices: list[Callable[[], dict[str, Any]]] = [
            lambda: tool_call("describe", table_name=table),
            lambda: tool_call("sample", table_name=table),
            lambda: tool_call(
                "query", sql=f'SELECT * FROM "{table}" LIMIT {self._rng.randint(1, 5)}'
            ),
            lambda: tool_call("answer", value=self._guess(self._rng.randint(0, 9))),
        ]
        return assistant_message(self._rng.choice(choices)())

    def _guess(self, value: int) -> str:
        return f"SELECT {value}" if self._answer == "sql" else answer_json([[value]])


def build_policy(
    kind: str,
    *,
    data_dir: Path | None = None,
    seed: int = 0,
    answer: AnswerMode = "value",
    model: str = "tiny",
    openai_base_url: str | None = None,
    openai_api_key: str = "EMPTY",
    temperature: float = 0.0,
    max_new_tokens: int = 256,
    chat_template_kwargs: dict[str, Any] | None = None,
) -> Policy:
    """A policy by name: ``random``, ``oracle`` or ``llm``.

    ``answer`` is the episodes' answer format, for the two baselines (a model
    reads it from each episode's instructions). ``llm`` is a local model
    (``model``: a path, ``"tiny"``, ...) through transformers, or the model an
    OpenAI-compatible endpoint serves when ``openai_base_url`` is given; only it
    imports torch.
    """
    if kind == "oracle":
        return OraclePolicy(data_dir, answer)
    if kind == "random":
        return RandomPolicy(seed, answer)
    if kind != "llm":
        raise ValueError(f"Unknown policy {kind!r}: choose random, oracle or llm.")
    if openai_base_url:
        from sql_env.training.llm_policy import OpenAIPolicy

        return OpenAIPolicy(
            openai_base_url,
            model,
            api_key=openai_api_key,
            temperature=temperature,
            max_tokens=max_new_tokens,
        )
    from sql_env.training.llm_policy import TransformersPolicy
    from sql_env.training.models import load_model

    loaded, tokenizer = load_model(model, seed=seed)
    return TransformersPolicy(
        loaded,
        tokenizer,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
        chat_template_kwargs=chat_template_kwargs,
    )
