"""Wire types shared by the SQLEnv server and client.

The field descriptions are the contract: they appear in ``/schema``, in the web
interface and in every client. Nothing here may ever carry a question's gold SQL
or gold result.
"""

from typing import Literal, get_args

from openenv.core.env_server.types import Action, Observation, State
from pydantic import Field

from sql_env.server.rewards import RewardMode

ActionType = Literal["DESCRIBE", "SAMPLE", "QUERY", "ANSWER"]
# Whether the reset observation carries the schema, and what ANSWER carries.
SchemaMode = Literal["hidden", "given"]
AnswerMode = Literal["value", "sql"]
ACTION_TYPES: tuple[ActionType, ...] = get_args(ActionType)
SCHEMA_MODES: tuple[SchemaMode, ...] = get_args(SchemaMode)
ANSWER_MODES: tuple[AnswerMode, ...] = get_args(AnswerMode)
# The step budget of an episode unless a server or a caller sets another.
MAX_STEPS = 15

__all__ = [
    "ACTION_TYPES",
    "ANSWER_MODES",
    "MAX_STEPS",
    "SCHEMA_MODES",
    "ActionType",
    "AnswerMode",
    "RewardMode",
    "SQLAction",
    "SQLObservation",
    "SQLState",
    "SchemaMode",
]


class SQLAction(Action):
    """One agent move: look at a table, run a read-only query, or answer."""

    action_type: ActionType = Field(
        description=(
            "DESCRIBE: columns, keys and row count of a table. "
            "SAMPLE: the first rows of a table. "
            "QUERY: run one read-only SQL statement. "
            "ANSWER: submit the final answer and end the episode."
        )
    )
    argument: str = Field(
        default="",
        description=(
            "DESCRIBE/SAMPLE: a table name. QUERY: one SQLite SELECT statement. "
            "ANSWER: the answer as JSON (a value, a list, or a list of rows) "
            "or plain text (one value per line); in an episode whose answers "
            "are SQL, one SELECT statement whose result answers the question."
        ),
    )


class SQLObservation(Observation):
    """What the agent sees after reset or a step."""

    question: str = Field(default="", description="The natural-language question.")
    evidence: str = Field(
        default="",
        description="External knowledge given with the question (BIRD), if any.",
    )
    question_id: str = Field(
        default="", description="Stable id of the question, e.g. 'spider/dev/12'."
    )
    db_id: str = Field(default="", description="The database the question is about.")
    tables: list[str] = Field(
        default_factory=list, description="Names of the database's tables."
    )
    db_schema: str = Field(
        default="",
        description=(
            "The database schema as CREATE TABLE statements with keys, in episodes "
            "that give it (reset with schema='given'); empty otherwise."
        ),
    )
    instructions: str = Field(
        default="",
        description=(
            "At reset: the tools and the answer format of this episode, for an "
            "agent that never saw SQLEnv's training prompt. Empty after reset."
        ),
    )
    action_type: str = Field(
        default="", description="The action that produced this observation."
    )
    result: str = Field(
        default="", description="The action's result as readable text; empty on error."
    )
    error: str = Field(
        default="", description="Why the action failed; empty on success."
    )
    step_count: int = Field(default=0, description="Steps taken in this episode.")
    budget_remaining: int = Field(
        default=0, description="Steps left before the episode is truncated."
    )
    history: list[str] = Field(
        default_factory=list, description="One line per action taken so far."
    )
    truncated: bool = Field(
        default=False,
        description="True when the episode ended because the step budget ran out.",
    )
    answer_correct: bool | None = Field(
        default=None,
        description="After ANSWER: whether the answer matched. None before.",
    )


class SQLState(State):
    """Public episode state served by ``GET /state``; never holds gold data."""

    question_id: str = Field(default="", description="Id of the current question.")
    dataset: str = Field(default="", description="Dataset of the current question.")
    db_id: str = Field(default="", description="Database of the current question.")
    split: str = Field(default="", description="Split the question came from.")
    reward_mode: RewardMode = Field(default="binary", description="Reward mode.")
    schema_mode: SchemaMode = Field(
        default="hidden", description="Whether the schema was given at reset."
    )
    answer_mode: AnswerMode = Field(
        default="value", description="Whether ANSWER carries values or SQL."
    )
    max_steps: int = Field(default=0, description="Step budget of the episode.")
    done: bool = Field(default=False, description="Whether the episode has ended.")
    truncated: bool = Field(
        default=False, description="Ended because the step budget ran out."
    )
    answer_correct: bool | None = Field(
        default=None, description="After ANSWER: whether the answer matched."
    )
    rewards: list[float] = Field(
        default_factory=list, description="Reward of each step, in order."
    )
    total_reward: float = Field(default=0.0, description="Sum of the step rewards.")
