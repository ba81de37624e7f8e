"""The record of one episode: what happened, and the observations and state it gives.

Plain attributes, kept out of pydantic on purpose: validating the growing reward
list and history on every assignment cost more than the SQL of a typical step.
Observations are built with ``model_construct`` from values of the declared
types, and ``state`` builds the public ``SQLState`` when asked.
"""

import logging
from dataclasses import dataclass, field

from sql_env.models import SQLObservation, SQLState
from sql_env.server import actions, rewards
from sql_env.server.question_bank import Question

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class EpisodeRecord:
    """Bookkeeping of the running episode (empty before the first reset)."""

    max_steps: int
    question: Question | None = None
    episode_id: str = ""
    dataset: str = ""
    reward_mode: str = "binary"
    schema_mode: str = "hidden"
    answer_mode: str = "value"
    evidence: str = ""
    tables: list[str] = field(default_factory=list)
    step_count: int = 0
    done: bool = False
    truncated: bool = False
    answer_correct: bool | None = None
    rewards: list[float] = field(default_factory=list)
    history: list[str] = field(default_factory=list)
    potential: float = 0.0

    def finish(self, step: actions.Step) -> SQLObservation:
        """Reward, history and episode end of a step whose outcome is known."""
        potential = self.potential if step.potential is None else step.potential
        reward = rewards.step_reward(
            self.reward_mode,
            answered=step.answered,
            correct=step.correct,
            potential_before=self.potential,
            potential_after=potential,
        )
        self.potential = potential
        self.history.append(actions.history_line(step))
        result = step.result
        truncated = not step.answered and self.step_count >= self.max_steps
        if truncated:
            result = (result + "\n" if result else "") + (
                "Step budget exhausted: the episode is over."
            )
        self.rewards.append(reward)
        if step.answered or truncated:
            self.done = True
            self.truncated = truncated
            self.answer_correct = step.correct if step.answered else None
            logger.debug("episode %s ended: %s", self.episode_id, self.history[-1])
        return self.observation(
            action_type=step.action.action_type,
            result=result,
            error=step.error,
            reward=reward,
            done=self.done,
        )

    def observation(
        self,
        *,
        action_type: str,
        result: str = "",
        error: str = "",
        reward: float | None = 0.0,
        done: bool = False,
        db_schema: str = "",
        instructions: str = "",
    ) -> SQLObservation:
        question = self.question
        return SQLObservation.model_construct(
            question=question.question if question else "",
            evidence=self.evidence,
            question_id=question.id if question else "",
            db_id=question.db_id if question else "",
            tables=list(self.tables),
            db_schema=db_schema,
            instructions=instructions,
            action_type=action_type,
            result=result,
            error=error,
            step_count=self.step_count,
            budget_remaining=max(0, self.max_steps - self.step_count),
            history=list(self.history),
            truncated=self.truncated,
            answer_correct=self.answer_correct,
            done=done,
            reward=reward,
            metadata={},  # explicit: pydantic inspects a default_factory per call
        )

    def state(self) -> SQLState:
        """The public state: nothing a client may not see."""
        question = self.question
        return SQLState(
            episode_id=self.episode_id or None,
            step_count=self.step_count,
            question_id=question.id if question else "",
            dataset=self.dataset,
            db_id=question.db_id if question else "",
            split=question.split if question else "",
            reward_mode=self.reward_mode,
            schema_mode=self.schema_mode,
            answer_mode=self.answer_mode,
            max_steps=self.max_steps if question else 0,
            done=self.done,
            truncated=self.truncated,
            answer_correct=self.answer_correct,
            rewards=list(self.rewards),
            total_reward=sum(self.rewards),
        )
