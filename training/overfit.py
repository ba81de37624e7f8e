"""The overfit check: can the recipe learn a handful of questions by heart?

The first thing an RL practitioner runs on a new setup. A tiny model is
warm-started by SFT on the gold trajectories of a few train questions, then
trained with GRPO through ``environment_factory`` on the same questions. If
rewards, loss masks and gradients flow end to end, its success on them rises
from 0 to near 1; if any link is broken (a mask that trains the wrong tokens,
a prompt rendered differently from the warm start, a reward that never
arrives, an update lost to precision), it does not. It shows nothing about
generalisation: the questions it is scored on are the ones it trained on.

:func:`run_overfit` writes ``OUT/overfit.json`` (greedy success on the
questions before training, after SFT and after GRPO, plus GRPO's sampled
success per step), ``OUT/grpo/learning_curve.png`` (reward, success and tool
calls per GRPO step) and ``OUT/overfit.png`` (the three stages).
"""

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from sql_env.server.question_bank import DEFAULT_DATA_DIR, Question, load_bank
from sql_env.training.data import select_questions
from sql_env.training.environment import SQLToolEnv
from sql_env.training.evaluation import evaluate
from sql_env.training.grpo import train_grpo
from sql_env.training.llm_policy import TransformersPolicy
from sql_env.training.models import load_model
from sql_env.training.plots import plot_stages
from sql_env.training.recipes import grpo_config, recipe_for_device, sft_config
from sql_env.training.sft import run_sft, sft_dataset

SUMMARY = "overfit.json"
STAGES_PLOT = "overfit.png"


@dataclass
class OverfitSettings:
    """The check's settings; the defaults are the measured ones in docs/training.md.

    Every GRPO step plays every question ``num_generations`` times. Sampling
    at temperature 0.5 keeps a tiny model's rollouts close enough to the warm
    start that some succeed from the first steps; the KL term (``beta``)
    keeps a bad step from undoing the tool-call format. The completion budget
    holds a whole gold trajectory (DESCRIBE, QUERY, ANSWER and their results):
    TRL ends a rollout at a tool result that would pass it, unrewarded and
    uncounted as clipped, so a smaller budget pays only rollouts that skip the
    exploration the warm start taught. The warm start is short of perfect, so
    GRPO has something to learn. A model this small
    runs fastest on one CPU thread (``torch_threads``, None: torch's default):
    several threads mostly wait on each other.
    """

    model: str = "tiny"
    torch_threads: int | None = 1
    n_questions: int = 4
    seed: int = 0
    sft_steps: int = 35
    sft_learning_rate: float = 5e-3
    grpo_steps: int = 50
    learning_rate: float = 1e-3
    num_generations: int = 4
    temperature: float = 0.5
    beta: float = 0.05
    max_completion_length: int = 512
    max_turns: int = 4
    eval_max_new_tokens: int = 96


@dataclass
class OverfitResult:
    """Greedy success on the questions at each stage, and GRPO's log."""

    question_ids: list[str]
    success_before: float
    success_after_sft: float
    success_after_grpo: float
    grpo_success: list[float]
    grpo_reward: list[float]
    seconds: dict[str, float]
    settings: dict[str, Any] = field(default_factory=dict)


def overfit_questions(
    data_dir: Path = DEFAULT_DATA_DIR, n: int = 4, seed: int = 0
) -> list[Question]:
    """``n`` easy train questions on one table, each answered by one integer.

    Short gold trajectories keep the check fast on a CPU; the answer must
    still be exact, so nothing is scored right by accident. The check's own
    ``seed`` varies the model and the sampling, not these questions.
    """
    candidates = [
        q
        for q in select_questions(
            load_bank(data_dir), "train", difficulties=["easy"], seed=seed
        )
        if len(q.tables_used) == 1
        and len(q.gold_rows) == 1
        and len(q.gold_rows[0]) == 1
        and isinstance(q.gold_rows[0][0], int)
    ]
    if len(candidates) < n:
        raise ValueError(f"Only {len(candidates)} questions fit the check, not {n}.")
    return candidates[:n]


def _greedy_success(model, tokenizer, questions, data_dir, settings) -> float:
    policy = TransformersPolicy(
        model, tokenizer, max_new_tokens=settings.eval_max_new_tokens
    )
    with SQLToolEnv(data_dir) as env:
        episodes = evaluate(
            env, policy, questions, max_turns=settings.max_turns, progress=False
        )
    model.train()
    return sum(e.success for e in episodes) / len(episodes)


def run_overfit(
    out_dir: Path,
    data_dir: Path = DEFAULT_DATA_DIR,
    settings: OverfitSettings | None = None,
) -> OverfitResult:
    """Warm-start, train with GRPO and score a tiny model on a few questions.

    Args:
        out_dir: Where the summary, the GRPO log and the plots go.
        data_dir: Built data directory (question bank and databases).
        settings: The check's settings (default: :class:`OverfitSettings`).

    Returns:
        The success at each stage and GRPO's per-step log.
    """
    settings = settings or OverfitSettings()
    threads = torch.get_num_threads()
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    try:
        return _run_overfit(Path(out_dir), Path(data_dir), settings)
    finally:
        torch.set_num_threads(threads)


def _run_overfit(
    out_dir: Path, data_dir: Path, settings: OverfitSettings
) -> OverfitResult:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    recipe = recipe_for_device("cpu")
    questions = overfit_questions(data_dir, settings.n_questions)
    model, tokenizer = load_model(settings.model, seed=settings.seed)
    seconds: dict[str, float] = {}

    before = _greedy_success(model, tokenizer, questions, data_dir, settings)

    started = time.perf_counter()
    dataset = sft_dataset(questions, data_dir)
    run_sft(
        model,
        tokenizer,
        dataset,
        sft_config(
            recipe,
            str(out_dir / "sft"),
            max_steps=settings.sft_steps,
            learning_rate=settings.sft_learning_rate,
            lr_scheduler_type="constant",
            per_device_train_batch_size=len(dataset),
            seed=settings.seed,
            disable_tqdm=True,
        ),
        recipe.chat_template_kwargs,
    )
    seconds["sft"] = round(time.perf_counter() - started, 1)
    after_sft = _greedy_success(model, tokenizer, questions, data_dir, settings)

    started = time.perf_counter()
    config = grpo_config(
        recipe,
        str(out_dir / "grpo"),
        max_steps=settings.grpo_steps,
        learning_rate=settings.learning_rate,
        lr_scheduler_type="constant",
        per_device_train_batch_size=settings.num_generations * len(questions),
        num_generations=settings.num_generations,
        temperature=settings.temperature,
        beta=settings.beta,
        max_completion_length=settings.max_completion_length,
        max_tool_calling_iterations=settings.max_turns,
        seed=settings.seed,
    )
    grpo = train_grpo(model, tokenizer, questions, config, data_dir=data_dir)
    seconds["grpo"] = round(time.perf_counter() - started, 1)
    after_grpo = _greedy_success(model, tokenizer, questions, data_dir, settings)

    result = OverfitResult(
        question_ids=[q.id for q in questions],
        success_before=before,
        success_after_sft=after_sft,
        success_after_grpo=after_grpo,
        grpo_success=[r.get("success", 0.0) for r in grpo.records],
        grpo_reward=[r.get("reward", 0.0) for r in grpo.records],
        seconds=seconds,
        settings=asdict(settings),
    )
    (out_dir / SUMMARY).write_text(json.dumps(asdict(result), indent=2) + "\n")
    plot_stages(
        {
            "before": before,
            "after SFT": after_sft,
            "after GRPO": after_grpo,
        },
        out_dir / STAGES_PLOT,
        f"Greedy success on the {len(questions)} training questions",
    )
    return result
