# /// script
# requires-python = ">=3.11"
# dependencies = [
#     "openenv-sql-env[train]",
# ]
# ///
"""Evaluate a policy on SQLEnv: success rate with a 95% CI, trajectories, plots.

Policies:
    random   random valid actions (a floor)
    oracle   DESCRIBE the gold query's tables, QUERY it, ANSWER its rows (reads the
             question bank directly; a ceiling and a check of the environment)
    llm      a chat model prompted with the training tool schema: a local model
             through transformers (--model PATH, or "tiny"/"smollm2"), or any
             OpenAI-compatible endpoint (--openai-base-url URL --model NAME)

Writes OUT/trajectories.jsonl, OUT/summary.json (n, success_rate, ci95, mean_reward,
mean_steps, error_rate, truncation_rate, per_database, per_difficulty) and PNGs
(success by difficulty and by database, steps per episode); with --train-logs,
also OUT/reward_curves.png from GRPO train_log.jsonl files.

Examples:
    python scripts/evaluate.py --policy oracle --split dev --out runs/eval/oracle
    python scripts/evaluate.py --policy random --n 200 --out runs/eval/random
    python scripts/evaluate.py --policy llm --model runs/grpo/final --n 100 \
        --out runs/eval/grpo --train-logs runs/grpo/train_log.jsonl
    python scripts/evaluate.py --policy oracle --env-url http://localhost:8000 \
        --n 50 --out runs/eval/oracle-remote
"""

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from sql_env.training.cli import parse_args
from sql_env.training.data import QuestionArguments
from sql_env.training.environment import DEFAULT_MAX_STEPS, SQLToolEnv
from sql_env.training.evaluation import evaluate, summarize, write_report
from sql_env.training.rollout import (
    DEFAULT_MAX_TURNS,
    OraclePolicy,
    Policy,
    RandomPolicy,
)


@dataclass
class EvaluateArguments(QuestionArguments):
    policy: Literal["random", "oracle", "llm"] = field(
        default="oracle", metadata={"help": "Policy to evaluate."}
    )
    split: Literal["train", "dev"] = field(
        default="dev", metadata={"help": "Question split."}
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
    train_logs: list[Path] = field(
        default_factory=list,
        metadata={"help": "GRPO train_log.jsonl files to plot as reward curves."},
    )
    progress: bool = field(default=True, metadata={"help": "Show a progress bar."})


def build_policy(args: EvaluateArguments) -> Policy:
    """The policy named by ``args.policy``."""
    if args.policy == "oracle":
        return OraclePolicy(args.data_dir)
    if args.policy == "random":
        return RandomPolicy(args.seed)
    if args.openai_base_url:
        from sql_env.training.llm_policy import OpenAIPolicy

        return OpenAIPolicy(
            args.openai_base_url,
            args.model,
            api_key=args.openai_api_key,
            temperature=args.temperature,
            max_tokens=args.max_new_tokens,
        )
    from sql_env.training.llm_policy import TransformersPolicy
    from sql_env.training.models import load_model

    model, tokenizer = load_model(args.model, seed=args.seed)
    return TransformersPolicy(
        model,
        tokenizer,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        seed=args.seed,
    )


def plot_train_logs(paths: list[Path], out_dir: Path) -> Path:
    """Reward/success curves of several GRPO runs in one PNG."""
    from sql_env.training.plots import plot_learning_curves, read_jsonl

    logs = {path.parent.name or str(path): read_jsonl(path) for path in paths}
    return plot_learning_curves(logs, out_dir / "reward_curves.png")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(EvaluateArguments, argv, description=__doc__.split("\n")[0])
    questions = args.questions(args.split, args.n, args.seed)
    policy = build_policy(args)
    started = time.perf_counter()
    with SQLToolEnv(
        args.data_dir, args.env_url, split=args.split, max_steps=args.max_steps
    ) as env:
        episodes = evaluate(env, policy, questions, args.max_turns, args.progress)
    summary = {
        **summarize(episodes),
        "policy": args.policy,
        "split": args.split,
        "seconds": round(time.perf_counter() - started, 2),
        "settings": {k: str(v) for k, v in asdict(args).items()},
    }
    written = write_report(args.out, episodes, summary, args.policy)
    if args.train_logs:
        written.append(plot_train_logs(args.train_logs, args.out))
    low, high = summary["ci95"]
    print(
        f"{args.policy} on {args.split}: success {summary['success_rate']:.1%} "
        f"(95% CI {low:.1%}-{high:.1%}) over {summary['n']} questions, "
        f"mean steps {summary['mean_steps']:.1f}"
    )
    for path in written:
        print(f"wrote {path}")
    print(json.dumps({k: summary[k] for k in ("n", "success_rate", "ci95")}))
    return summary


if __name__ == "__main__":
    main()
