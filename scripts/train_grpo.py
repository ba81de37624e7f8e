# /// script
# requires-python = ">=3.11"
# dependencies = ["openenv-sql-env[train]"]
#
# # Not on PyPI: `uv run scripts/train_grpo.py` installs SQLEnv from this checkout.
# [tool.uv.sources]
# openenv-sql-env = { path = "..", editable = true }
# ///
"""Train a chat model with GRPO in SQLEnv (TRL GRPOTrainer + environment_factory).

Each rollout is one episode: the model calls answer / describe / query / sample
(the tools of sql_env.training.environment.SQLToolEnv) and is rewarded by the
environment. Optionally warm-starts with SFT on gold-SQL trajectories first,
rendered token for token as GRPO renders them. Writes
OUTPUT_DIR/train_log.jsonl (reward, success, tool use per step),
OUTPUT_DIR/learning_curve.png and, with --save_model, OUTPUT_DIR/final.

Arguments are this file's SQLEnvArguments plus every trl.GRPOConfig option
(--num_generations, --max_completion_length, --learning_rate, --max_steps,
--beta, --log_completions, --use_vllm, --chat_template_kwargs, --output_dir,
--seed, ...); --config FILE.yaml works as in TRL's scripts. Defaults come from
the recipe for the device at hand (sql_env.training.recipes: CPU, T4, L4, A100,
H100): precision (weights stay fp32; bf16, or fp16 on a T4, as mixed
precision), batch, gradient accumulation, KL weight, vLLM colocation when vllm
is installed, Qwen3 thinking off. Flags on the command line win.

Episodes are played in one setting, for the SFT warm start and GRPO alike:
--dataset (spider, bird, a custom name), --split, --schema hidden|given,
--answer value|sql, --evidence/--no_evidence (BIRD's hints); --difficulty takes
the dataset's levels and --curriculum orders by them.

CPU smoke run (tiny offline model, seconds per step):
    python scripts/train_grpo.py --model tiny --max_steps 3 \\
        --output_dir runs/grpo-tiny --max_completion_length 64

One GPU, Qwen3-0.6B with the recipe's settings (see docs/training.md):
    python scripts/train_grpo.py --model Qwen/Qwen3-0.6B --sft_steps 200 \\
        --difficulty easy,medium --curriculum --max_steps 300 \\
        --output_dir runs/grpo-qwen3 --save_model

BIRD with the schema given, answering SQL (the setting of text-to-SQL papers):
    python scripts/train_grpo.py --dataset bird --split train --schema given \
        --answer sql --model Qwen/Qwen3-0.6B --sft_steps 200 --max_steps 300 \
        --output_dir runs/grpo-bird --save_model

LoRA instead of every weight (the KL reference is then the base model):
    python scripts/train_grpo.py --model Qwen/Qwen3-1.7B --use_peft \\
        --learning_rate 1e-5 --output_dir runs/grpo-lora --save_model

Against a SQLEnv server (e.g. a Space): questions come from its task API, so
no local data is needed (except for --sft_steps, whose oracle reads gold SQL):
    python scripts/train_grpo.py --env_url https://USER-sql-env.hf.space ...
"""

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sql_env.server.question_bank import BankFormatError
from sql_env.training.cli import reported
from sql_env.training.data import QuestionArguments


@dataclass
class SQLEnvArguments(QuestionArguments):
    model: str | None = field(
        default=None,
        metadata={
            "help": "'tiny', 'tiny-qwen3', 'smollm2', or a path / hub id "
            "(default: the device recipe's)."
        },
    )
    split: str = field(
        default="train", metadata={"help": "Split of the dataset to train on."}
    )
    curriculum: bool = field(
        default=False,
        metadata={"help": "Order questions by the dataset's levels, easiest first."},
    )
    n_questions: int | None = field(
        default=None, metadata={"help": "Seeded sample of N training questions."}
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
    enable_thinking: bool | None = field(
        default=None,
        metadata={"help": "Qwen3 thinking on/off (default: the recipe's, off)."},
    )
    sft_steps: int = field(
        default=0,
        metadata={"help": "SFT warm-start steps on gold trajectories (0: none)."},
    )
    sft_questions: int = field(
        default=256,
        metadata={"help": "Training questions turned into SFT trajectories."},
    )
    sft_batch_size: int | None = field(
        default=None, metadata={"help": "SFT batch size (default: the recipe's)."}
    )
    sft_learning_rate: float | None = field(
        default=None, metadata={"help": "SFT learning rate (default: the recipe's)."}
    )
    use_peft: bool = field(
        default=False, metadata={"help": "Train LoRA adapters (needs peft)."}
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: str = field(
        default="all-linear",
        metadata={"help": "LoRA target modules: 'all-linear' or names a,b,c."},
    )
    save_model: bool = field(
        default=False, metadata={"help": "Save the trained model to OUTPUT_DIR/final."}
    )


def parse():
    """SQLEnvArguments and GRPOConfig, the device recipe's settings as defaults."""
    import sys

    from trl import GRPOConfig, TrlParser

    from sql_env.training.recipes import recipe_for_device

    recipe = recipe_for_device()
    parser = TrlParser((SQLEnvArguments, GRPOConfig))
    args, config = parser.parse_args_and_config(recipe_defaults(recipe) + sys.argv[1:])
    return recipe, args, config


def recipe_defaults(recipe) -> list[str]:
    """The recipe's GRPOConfig fields as command-line flags (later flags win)."""
    import json

    from sql_env.training.recipes import grpo_settings

    flags = []
    for name, value in grpo_settings(recipe).items():
        if isinstance(value, dict):
            text = json.dumps(value)
        elif isinstance(value, bool):
            text = str(value).lower()
        else:
            text = str(value)
        flags += [f"--{name}", text]
    return flags


def main() -> None:
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    recipe, args, config = parse()

    from sql_env.training.grpo import lora_config, save_trained_model, train_grpo
    from sql_env.training.models import load_model
    from sql_env.training.recipes import sft_config
    from sql_env.training.sft import warm_start

    if args.enable_thinking is not None:
        config.chat_template_kwargs = {
            **(config.chat_template_kwargs or {}),
            "enable_thinking": args.enable_thinking,
        }
    if args.curriculum:
        config.shuffle_dataset = False
    # Questions first: a wrong split or level fails before a model loads.
    with reported(ValueError, BankFormatError):
        questions = args.questions(
            args.split,
            args.n_questions,
            config.seed,
            curriculum=args.curriculum,
            env_url=args.env_url,
        )
        sft_questions = (
            args.questions(args.split, args.sft_questions, config.seed)
            if args.sft_steps > 0
            else []
        )
    model_name = args.model or recipe.model
    print(f"device recipe: {recipe.device}; model {model_name}")
    model, tokenizer = load_model(model_name, seed=config.seed)
    if args.sft_steps > 0:
        overrides = {
            "max_steps": args.sft_steps,
            "logging_steps": max(1, args.sft_steps // 10),
            "seed": config.seed,
        }
        if args.sft_batch_size:
            overrides["per_device_train_batch_size"] = args.sft_batch_size
        if args.sft_learning_rate:
            overrides["learning_rate"] = args.sft_learning_rate
        n = warm_start(
            model,
            tokenizer,
            sft_questions,
            sft_config(recipe, str(Path(config.output_dir) / "sft"), **overrides),
            data_dir=args.data_dir,
            env_url=args.env_url,
            chat_template_kwargs=config.chat_template_kwargs,
            settings=args.settings(),
        )
        print(f"SFT warm start: {n} trajectories, {args.sft_steps} steps")
    peft = None
    if args.use_peft:
        targets = args.lora_target_modules
        peft = lora_config(
            args.lora_r,
            args.lora_alpha,
            args.lora_dropout,
            targets if targets == "all-linear" else targets.split(","),
        )
    print(
        f"GRPO: {len(questions)} questions ({args.settings().label()}), "
        f"{config.max_steps} steps"
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
        settings=args.settings(),
        peft_config=peft,
    )
    if args.save_model:
        final = Path(config.output_dir) / "final"
        print(f"wrote {save_trained_model(result, tokenizer, final)}")
    print(f"wrote {result.log_path}")
    print(f"wrote {result.curve_path}")


if __name__ == "__main__":
    main()
