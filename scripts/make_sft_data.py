# /// script
# requires-python = ">=3.11"
# dependencies = ["openenv-sql-env[train]"]
#
# # Not on PyPI: `uv run scripts/make_sft_data.py` installs SQLEnv from this checkout.
# [tool.uv.sources]
# openenv-sql-env = { path = "..", editable = true }
# ///
"""Build SFT warm-start data from gold SQL, optionally fine-tune on it with TRL.

Every trajectory is the oracle's episode played through the real environment in
the given settings (--dataset, --schema, --answer, --evidence; DESCRIBE the gold
query's tables when the schema is hidden, QUERY it, ANSWER its rows or, with
--answer sql, the gold SQL), in exactly the chat and tool-call format GRPO uses
(same system prompt and instructions, tools in TRL's order, tool results).
Saved with datasets' save_to_disk as OUT/dataset (columns: messages, tools,
question_id, db_id, difficulty), plus OUT/sample.json with one example. With
--run_sft, TRL's SFTTrainer trains --model on the token ids and loss mask of
the GRPO rollout of each trajectory (sql_env.training.sft) and saves OUT/model,
which scripts/train_grpo.py takes as --model (with the same settings).

Examples:
    python scripts/make_sft_data.py --out runs/sft_data --n 2000
    python scripts/make_sft_data.py --dataset bird --schema given --answer sql \
        --out runs/sft_bird --n 2000
    python scripts/make_sft_data.py --out runs/sft-qwen3 --n 2000 --run_sft \
        --model Qwen/Qwen3-0.6B --sft_steps 200
    python scripts/train_grpo.py --model runs/sft-qwen3/model ...

Precision, batch size and learning rate default to the device recipe
(sql_env.training.recipes); --enable_thinking must match what GRPO will use.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from sql_env.server.question_bank import BankFormatError
from sql_env.training.cli import parse_args, reported
from sql_env.training.data import QuestionArguments


@dataclass
class SFTDataArguments(QuestionArguments):
    out: Path = field(
        default=Path("runs/sft_data"), metadata={"help": "Output directory."}
    )
    split: str = field(
        default="train", metadata={"help": "Split to build trajectories from."}
    )
    n: int | None = field(
        default=None, metadata={"help": "Seeded sample of N questions (default: all)."}
    )
    seed: int = field(default=0, metadata={"help": "Sampling seed."})
    max_answer_rows: int = field(
        default=20,
        metadata={
            "help": "Answers by value: skip questions whose gold result has more "
            "rows (0: keep all)."
        },
    )
    env_url: str | None = field(
        default=None,
        metadata={"help": "Play on a SQLEnv server instead of in-process."},
    )
    run_sft: bool = field(
        default=False,
        metadata={"help": "Fine-tune --model on the data with SFTTrainer."},
    )
    model: str = field(
        default="tiny",
        metadata={"help": "Model to fine-tune: 'tiny', 'smollm2' or a path / hub id."},
    )
    sft_steps: int = field(default=50, metadata={"help": "SFT optimizer steps."})
    learning_rate: float | None = field(
        default=None, metadata={"help": "SFT learning rate (default: the recipe's)."}
    )
    batch_size: int | None = field(
        default=None, metadata={"help": "SFT batch size (default: the recipe's)."}
    )
    enable_thinking: bool | None = field(
        default=None,
        metadata={"help": "Qwen3 thinking on/off (default: the recipe's, off)."},
    )


def fine_tune(dataset, args: SFTDataArguments) -> Path:
    """SFT ``args.model`` on ``dataset`` with the device recipe; return where saved."""
    from sql_env.training.models import load_model
    from sql_env.training.recipes import recipe_for_device, sft_config
    from sql_env.training.rendering import save_chat_template_kwargs
    from sql_env.training.sft import run_sft

    recipe = recipe_for_device()
    kwargs = dict(recipe.chat_template_kwargs)
    if args.enable_thinking is not None:
        kwargs["enable_thinking"] = args.enable_thinking
    overrides = {"max_steps": args.sft_steps, "seed": args.seed}
    if args.learning_rate:
        overrides["learning_rate"] = args.learning_rate
    if args.batch_size:
        overrides["per_device_train_batch_size"] = args.batch_size
    model, tokenizer = load_model(args.model, seed=args.seed)
    config = sft_config(recipe, str(args.out / "sft_run"), **overrides)
    model = run_sft(model, tokenizer, dataset, config, kwargs)
    target = args.out / "model"
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    save_chat_template_kwargs(target, kwargs)
    return target


def main() -> None:
    args = parse_args(SFTDataArguments, description=__doc__.split("\n")[0])
    from sql_env.training.sft import sft_dataset

    with reported(ValueError, BankFormatError):
        questions = args.questions(args.split, args.n, args.seed)
    dataset = sft_dataset(
        questions,
        args.data_dir,
        args.env_url,
        args.max_answer_rows or None,
        settings=args.settings(),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    dataset.save_to_disk(args.out / "dataset")
    sample = args.out / "sample.json"
    sample.write_text(json.dumps(dataset[0], indent=2, ensure_ascii=False) + "\n")
    print(
        f"{len(dataset)} trajectories from {len(questions)} {args.dataset}/"
        f"{args.split} questions ({args.settings().label()})"
    )
    print(f"wrote {args.out / 'dataset'}")
    print(f"wrote {sample}")
    if args.run_sft:
        print(f"wrote {fine_tune(dataset, args)}")


if __name__ == "__main__":
    main()
