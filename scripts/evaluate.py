# /// script
# requires-python = ">=3.11"
# dependencies = ["openenv-sql-env[train]"]
#
# # Not on PyPI: `uv run scripts/evaluate.py` installs SQLEnv from this checkout.
# [tool.uv.sources]
# openenv-sql-env = { path = "..", editable = true }
# ///
"""Evaluate a policy on SQLEnv: execution accuracy with a 95% CI, pass@k, plots.

Each question of --dataset's --split is played in one setting: --schema hidden
(explore) or given (CREATE TABLEs in the first message), --answer value (the
rows) or sql (one SELECT, scored by the dataset's official execution rule: then
the accuracy is the dataset's execution accuracy, EX), BIRD's evidence shown
unless --no-evidence. docs/evaluation.md says how to set a number next to a
published one.

Policies:
    random   random valid actions (a floor)
    oracle   DESCRIBE the gold query's tables (schema hidden), QUERY it, ANSWER
             its rows or, with --answer sql, the gold SQL (reads the question
             bank directly; a ceiling and a check of the environment)
    llm      a chat model prompted with the training tool schema: a local model
             through transformers (--model PATH, or "tiny"/"smollm2"), or any
             OpenAI-compatible endpoint (--openai-base-url URL --model NAME)

With --samples K every question is played K times (the llm policy sampling at
--temperature): the summary adds pass@1 and pass@K (unbiased estimator) and
majority@K (the most frequent answer; value answers grouped by the verifier's
reading, SQL answers by their result on the database, run locally).

Writes OUT/trajectories.jsonl, OUT/summary.json (n, samples, success_rate, ci95,
pass_at_k, majority_at_k, pass_curve, mean_reward, mean_steps, error_rate,
truncation_rate, per_difficulty, per_database, settings) and PNGs (accuracy by
difficulty with CIs, success by database, steps per episode, pass@k curve when
sampling); prints a table per difficulty; with --train-logs, also
OUT/reward_curves.png from GRPO train_log.jsonl files.

Examples:
    python scripts/evaluate.py --policy oracle --split dev --out runs/eval/oracle
    python scripts/evaluate.py --policy random --n 200 --out runs/eval/random
    python scripts/evaluate.py --dataset spider --split dev --schema given \
        --answer sql --policy llm --model runs/grpo/final --out runs/eval/ex
    python scripts/evaluate.py --dataset bird --split dev --answer sql \
        --policy llm --model runs/grpo/final --samples 8 --temperature 0.8 \
        --out runs/eval/bird-maj8
    python scripts/evaluate.py --policy llm --model runs/grpo/final --n 100 \
        --out runs/eval/grpo --train-logs runs/grpo/train_log.jsonl
    python scripts/evaluate.py --policy oracle --env-url http://localhost:8000 \
        --n 50 --out runs/eval/oracle-remote

With --env-url the questions come from the server's task API (no local data
needed for random and llm; the oracle reads the local question bank).
A model saved by scripts/train_grpo.py --save_model is evaluated with the
chat_template_kwargs it was trained with (saved next to it), unless
--enable_thinking says otherwise.
"""

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from sql_env.server.question_bank import BankFormatError
from sql_env.server.sandbox import QUERY_TIMEOUT_S
from sql_env.training.cli import parse_args, reported
from sql_env.training.data import QuestionArguments
from sql_env.training.environment import DEFAULT_MAX_STEPS
from sql_env.training.evaluation import format_table, run_evaluation
from sql_env.training.plots import plot_learning_curves, read_jsonl
from sql_env.training.rendering import load_chat_template_kwargs
from sql_env.training.rollout import DEFAULT_MAX_TURNS, build_policy


@dataclass
class EvaluateArguments(QuestionArguments):
    policy: Literal["random", "oracle", "llm"] = field(
        default="oracle", metadata={"help": "Policy to evaluate."}
    )
    split: str = field(
        default="dev",
        metadata={"help": "A split of the dataset (spider: dev, train, test)."},
    )
    samples: int = field(
        default=1,
        metadata={"help": "Episodes per question; above 1: pass@k, majority@k."},
    )
    out: Path = field(default=Path("runs/eval"), metadata={"help": "Output directory."})
    n: int | None = field(
        default=None,
        metadata={"help": "Seeded sample of N questions (default: the whole split)."},
    )
    seed: int = field(default=0, metadata={"help": "Seed for sampling and policies."})
    env_url: str | None = field(
        default=None,
        metadata={"help": "Play on a SQLEnv server (http://host:8000) over WebSocket."},
    )
    max_turns: int = field(
        default=DEFAULT_MAX_TURNS, metadata={"help": "Assistant turns per episode."}
    )
    max_steps: int = field(
        default=DEFAULT_MAX_STEPS,
        metadata={"help": "Step budget per episode (in-process environment only)."},
    )
    query_timeout_s: float = field(
        default=QUERY_TIMEOUT_S,
        metadata={"help": "Deadline of one SQL statement (in-process only)."},
    )
    model: str = field(
        default="tiny",
        metadata={
            "help": "llm: local path/hub id, 'tiny', 'smollm2', or endpoint model."
        },
    )
    openai_base_url: str | None = field(
        default=None,
        metadata={"help": "llm: OpenAI-compatible endpoint (http://host:port/v1)."},
    )
    openai_api_key: str = field(
        default="EMPTY", metadata={"help": "llm: API key for the endpoint."}
    )
    temperature: float = field(
        default=0.0, metadata={"help": "llm: sampling temperature (0 = greedy)."}
    )
    max_new_tokens: int = field(
        default=256, metadata={"help": "llm: tokens per assistant turn."}
    )
    enable_thinking: bool | None = field(
        default=None,
        metadata={
            "help": "llm: Qwen3 thinking on/off (default: as the model was trained)."
        },
    )
    train_logs: list[Path] = field(
        default_factory=list,
        metadata={"help": "GRPO train_log.jsonl files to plot as reward curves."},
    )
    progress: bool = field(default=True, metadata={"help": "Show a progress bar."})


def chat_template_kwargs(args: EvaluateArguments) -> dict:
    """What the model was trained with, unless --enable_thinking overrides it."""
    kwargs = load_chat_template_kwargs(Path(args.model))
    if args.enable_thinking is not None:
        kwargs["enable_thinking"] = args.enable_thinking
    return kwargs


def main() -> None:
    args = parse_args(EvaluateArguments, description=__doc__.split("\n")[0])
    if args.samples > 1 and args.policy == "llm" and args.temperature <= 0:
        warnings.warn(
            f"--samples {args.samples} with --temperature {args.temperature}: a "
            "greedy model gives the same answer every time.",
            stacklevel=1,
        )
    with reported(ValueError, BankFormatError):
        questions = args.questions(args.split, args.n, args.seed, env_url=args.env_url)
    policy = build_policy(
        args.policy,
        data_dir=args.data_dir,
        seed=args.seed,
        answer=args.answer,
        model=args.model,
        openai_base_url=args.openai_base_url,
        openai_api_key=args.openai_api_key,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        chat_template_kwargs=chat_template_kwargs(args),
    )
    report = run_evaluation(
        policy,
        questions,
        args.out,
        settings=args.settings(),
        samples=args.samples,
        levels=args.levels(args.env_url),
        data_dir=args.data_dir,
        env_url=args.env_url,
        max_turns=args.max_turns,
        max_steps=args.max_steps,
        query_timeout_s=args.query_timeout_s,
        label=args.policy,
        arguments=asdict(args),
        progress=args.progress,
    )
    written = list(report.paths)
    if args.train_logs:
        logs = {
            path.parent.name or str(path): read_jsonl(path) for path in args.train_logs
        }
        written.append(plot_learning_curves(logs, args.out / "reward_curves.png"))
    summary = report.summary
    low, high = summary["ci95"]
    print(f"{args.policy} on {args.dataset}/{args.split} ({summary['setting']})")
    print(format_table(summary))
    print(
        f"accuracy {summary['success_rate']:.1%} (95% CI {low:.1%}-{high:.1%}) "
        f"over {summary['n']} questions x {summary['samples']} samples, "
        f"mean steps {summary['mean_steps']:.1f}, {summary['seconds']:.0f} s"
    )
    for path in written:
        print(f"wrote {path}")
    print(json.dumps({k: summary[k] for k in ("n", "success_rate", "ci95")}))


if __name__ == "__main__":
    main()
