"""GRPO over SQLEnv with TRL's ``GRPOTrainer`` and ``environment_factory``.

The training script and the notebook both call :func:`train_grpo`; it builds the
dataset (one row per question: the shared prompt plus the question id that
``SQLToolEnv.reset`` plays), checks a remote server's session capacity, trains,
writes ``train_log.jsonl`` (reward, success, tool use per step) and draws
``learning_curve.png``.

The reward is the environment's own (``SQLToolEnv.get_reward``, weight 1).
``success`` is added as a zero-weight reward function: TRL then logs it per step
(``rewards/success/mean``) without it changing the gradient.
"""

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)
from trl import GRPOConfig, GRPOTrainer

from sql_env.server.question_bank import Question
from sql_env.training.environment import (
    SQLToolEnv,
    check_session_capacity,
    make_env_factory,
)
from sql_env.training.plots import plot_learning_curves, read_jsonl
from sql_env.training.prompts import training_prompt

TRAIN_LOG = "train_log.jsonl"
LEARNING_CURVE = "learning_curve.png"
# TRL log keys -> short names in train_log.jsonl.
LOGGED_KEYS = {
    "reward": "reward",
    "reward_std": "reward_std",
    "rewards/success/mean": "success",
    "rewards/SQLToolEnv/mean": "env_reward",
    "tools/call_frequency": "tool_calls",
    "tools/failure_frequency": "tool_failures",
    "completions/mean_length": "completion_length",
    "completions/clipped_ratio": "clipped_ratio",
    "env/steps": "env_steps",
    "env/answered": "answered",
    "env/error_steps": "error_steps",
    "loss": "loss",
    "entropy": "entropy",
    "learning_rate": "learning_rate",
    "step_time": "step_time",
}


def grpo_dataset(questions: Sequence[Question]) -> Dataset:
    """One GRPO row per question; TRL passes the row to ``SQLToolEnv.reset``."""
    return Dataset.from_list(
        [
            {
                "prompt": training_prompt(),
                "question_id": q.id,
                "split": q.split,
                "db_id": q.db_id,
                "hardness": q.hardness,
            }
            for q in questions
        ]
    )


def success(
    environments: Sequence[SQLToolEnv], log_metric: Any = None, **_: Any
) -> list[float]:
    """1.0 per rollout that ended with a correct ANSWER (logged, weight 0).

    Args:
        environments: The rollouts' environments (passed by TRL).
        log_metric: TRL's callback for extra scalar metrics.

    Returns:
        One value per rollout.
    """
    if log_metric is not None and environments:
        n = len(environments)
        observations = [env.observation for env in environments]
        steps = sum(obs.step_count for obs in observations if obs is not None)
        answered = sum(
            obs is not None and obs.answer_correct is not None for obs in observations
        )
        log_metric("env/steps", steps / n)
        log_metric("env/answered", answered / n)
        log_metric("env/error_steps", sum(env.error_count for env in environments) / n)
    return [1.0 if env.success else 0.0 for env in environments]


class JsonlLogCallback(TrainerCallback):
    """Append each GRPO step's reward, success and tool use to a JSONL file.

    Args:
        path: The ``train_log.jsonl`` to write (truncated at the start of training).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **_: Any,
    ) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("", encoding="utf-8")

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **_: Any,
    ) -> None:
        if not logs or "reward" not in logs:
            return  # the end-of-training summary has no per-step metrics
        record: dict[str, Any] = {"step": state.global_step}
        for key, name in LOGGED_KEYS.items():
            value = logs.get(key)
            if value is not None and math.isfinite(float(value)):
                record[name] = float(value)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


@dataclass(frozen=True)
class GRPOResult:
    """What a training run left behind."""

    trainer: GRPOTrainer
    log_path: Path
    curve_path: Path
    records: list[dict[str, Any]]


def train_grpo(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[Question],
    config: GRPOConfig,
    *,
    data_dir: Path | None = None,
    env_url: str | None = None,
    reward_mode: str = "binary",
    max_env_steps: int = 15,
    callbacks: Sequence[TrainerCallback] = (),
) -> GRPOResult:
    """Train with GRPO on ``questions``, playing them in SQLEnv.

    Args:
        model: Chat model with a tool-calling template TRL recognises.
        tokenizer: Its tokenizer (left padding).
        questions: Training questions (one dataset row each).
        config: TRL settings. ``max_tool_calling_iterations`` is the turn limit;
            ``reward_weights`` is set here (env reward 1, success 0).
        data_dir: Data directory of the in-process environment.
        env_url: SQLEnv server URL; episodes then run over WebSocket and the
            server must hold one session per rollout of a generation batch.
        reward_mode: ``"binary"`` or ``"shaped"``.
        max_env_steps: Step budget of each episode.
        callbacks: Extra trainer callbacks.

    Returns:
        The trainer, the log and learning-curve paths and the logged records.

    Raises:
        RuntimeError: The server at ``env_url`` cannot hold the generation batch.
    """
    if env_url is not None:
        check_session_capacity(env_url, config.generation_batch_size)
    config.reward_weights = [
        0.0
    ]  # `success` is a metric; the env reward is added by TRL
    output_dir = Path(config.output_dir)
    log_path = output_dir / TRAIN_LOG
    factory = make_env_factory(
        data_dir, env_url, reward_mode=reward_mode, max_steps=max_env_steps
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[success],
        args=config,
        train_dataset=grpo_dataset(questions),
        processing_class=tokenizer,
        environment_factory=factory,
        callbacks=[JsonlLogCallback(log_path), *callbacks],
    )
    trainer.train()
    records = read_jsonl(log_path)
    curve_path = plot_learning_curves({"GRPO": records}, output_dir / LEARNING_CURVE)
    return GRPOResult(trainer, log_path, curve_path, records)
