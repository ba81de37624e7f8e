"""GRPO over SQLEnv with TRL's ``GRPOTrainer`` and ``environment_factory``.

The training script and the notebook both call :func:`train_grpo`; it builds the
dataset (one row per question: the shared prompt, the question id that
``SQLToolEnv.reset`` plays and the episode settings it plays it in), checks a
remote server's session capacity, trains, writes ``train_log.jsonl`` (reward,
success, tool use per step) and draws ``learning_curve.png``.

The reward is the environment's own (``SQLToolEnv.get_reward``, weight 1).
``success`` is added as a zero-weight reward function: TRL then logs it per step
(``rewards/success/mean``) without it changing the gradient.

With ``beta > 0`` TRL builds its KL reference by loading
``model.config.name_or_path`` again, i.e. the checkpoint the model was loaded
from, not the model it is given: after an SFT warm start that would anchor
GRPO to the model before the warm start. :func:`train_grpo` therefore saves the
model it is given to ``OUTPUT_DIR/reference`` and points the config there
(with LoRA the reference is the base model with the adapter off, already right).
"""

import json
import math
from collections.abc import Mapping, Sequence
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

from sql_env.training.data import Task
from sql_env.training.environment import (
    DEFAULT_MAX_STEPS,
    SQLToolEnv,
    check_session_capacity,
    make_env_factory,
)
from sql_env.training.plots import plot_learning_curves, read_jsonl
from sql_env.training.prompts import training_prompt
from sql_env.training.rendering import save_chat_template_kwargs
from sql_env.training.settings import EpisodeSettings

TRAIN_LOG = "train_log.jsonl"
LEARNING_CURVE = "learning_curve.png"
REFERENCE_DIR = "reference"
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


def lora_config(
    r: int = 16,
    alpha: int = 32,
    dropout: float = 0.05,
    target_modules: Sequence[str] | str = "all-linear",
) -> Any:
    """A ``peft.LoraConfig`` for causal-LM GRPO (``pip install peft``)."""
    from peft import LoraConfig

    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules
        if isinstance(target_modules, str)
        else list(target_modules),
        task_type="CAUSAL_LM",
    )


def pin_reference(model: PreTrainedModel, path: Path) -> Path:
    """Save ``model`` as the KL reference TRL will load (see the module docstring)."""
    model.save_pretrained(path)
    model.config.name_or_path = str(path)
    return Path(path)


def grpo_dataset(
    questions: Sequence[Task], settings: EpisodeSettings | None = None
) -> Dataset:
    """One GRPO row per question; TRL passes the row to ``SQLToolEnv.reset``.

    Each row carries the episode settings as ``reset_settings`` (dataset,
    schema, answer format, evidence), which ``reset`` passes on.
    """
    reset_settings = (settings or EpisodeSettings()).reset_kwargs()
    return Dataset.from_list(
        [
            {
                "prompt": training_prompt(),
                "question_id": q.id,
                "split": q.split,
                "db_id": q.db_id,
                "difficulty": q.difficulty,
                "reset_settings": reset_settings,
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
    questions: Sequence[Task],
    config: GRPOConfig,
    *,
    data_dir: Path | None = None,
    env_url: str | None = None,
    reward_mode: str = "binary",
    max_env_steps: int = DEFAULT_MAX_STEPS,
    settings: EpisodeSettings | None = None,
    reset_settings: Mapping[str, Any] | None = None,
    peft_config: Any = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> GRPOResult:
    """Train with GRPO on ``questions``, playing them in SQLEnv.

    Args:
        model: Chat model with a tool-calling template TRL recognises.
        tokenizer: Its tokenizer (left padding).
        questions: Training questions (one dataset row each): bank questions
            or the server's tasks (see ``data.py``).
        config: TRL settings. ``max_tool_calling_iterations`` is the turn limit;
            ``reward_weights`` is set here (env reward 1, success 0); with
            ``beta > 0`` the model is first saved as the KL reference.
        data_dir: Data directory of the in-process environment.
        env_url: SQLEnv server URL; episodes then run over WebSocket and the
            server must hold one session per rollout of a generation batch.
        reward_mode: ``"binary"`` or ``"shaped"``.
        max_env_steps: Step budget of each episode.
        settings: The episodes' dataset, schema, answer format and evidence
            (in every dataset row).
        reset_settings: Further arguments for every environment reset (the
            rows' settings win).
        peft_config: A ``peft.LoraConfig`` (see :func:`lora_config`) to train
            adapters instead of every weight.
        callbacks: Extra trainer callbacks.

    Returns:
        The trainer, the log and learning-curve paths and the logged records.

    Raises:
        RuntimeError: The server at ``env_url`` cannot hold the generation batch.
    """
    if env_url is not None:
        check_session_capacity(env_url, config.generation_batch_size)
    # `success` is a metric; the env reward is added by TRL with weight 1.
    config.reward_weights = [0.0]
    output_dir = Path(config.output_dir)
    log_path = output_dir / TRAIN_LOG
    if config.beta > 0 and peft_config is None:
        pin_reference(model, output_dir / REFERENCE_DIR)
    factory = make_env_factory(
        data_dir,
        env_url,
        reward_mode=reward_mode,
        max_steps=max_env_steps,
        reset_settings=reset_settings,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[success],
        args=config,
        train_dataset=grpo_dataset(questions, settings),
        processing_class=tokenizer,
        environment_factory=factory,
        peft_config=peft_config,
        callbacks=[JsonlLogCallback(log_path), *callbacks],
    )
    trainer.train()
    records = read_jsonl(log_path)
    curve_path = plot_learning_curves({"GRPO": records}, output_dir / LEARNING_CURVE)
    return GRPOResult(trainer, log_path, curve_path, records)


def save_trained_model(
    result: GRPOResult, tokenizer: PreTrainedTokenizerBase, path: Path
) -> Path:
    """Save the trained model, its tokenizer and its ``chat_template_kwargs``.

    LoRA adapters are merged first, so ``load_model(path)`` and vLLM take the
    directory as any checkpoint; the kwargs let ``scripts/evaluate.py``
    render prompts as training did.
    """
    path = Path(path)
    model = result.trainer.model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    save_chat_template_kwargs(path, result.trainer.args.chat_template_kwargs or {})
    return path
