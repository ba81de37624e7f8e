# /// script
# requires-python = ">=3.11"
# dependencies = [
#     "openenv-sql-env[train]",
# ]
# ///
"""Build SFT warm-start data from gold SQL, optionally fine-tune on it with TRL.

Every trajectory is the oracle's episode played through the real environment
(DESCRIBE the gold query's tables, QUERY it, ANSWER its rows), in exactly the
chat and tool-call format GRPO uses (same system prompt, tool schema, tool
results). Saved with datasets' save_to_disk as OUT/dataset (columns: messages,
tools, question_id, db_id, hardness), plus OUT/sample.json with one example.
With --run_sft, TRL's SFTTrainer trains --model on it and saves OUT/model, which
scripts/train_grpo.py takes as --model.

Examples:
    python scripts/make_sft_data.py --out runs/sft_data --n 2000
    python scripts/make_sft_data.py --out runs/sft-smollm2 --n 256 --run_sft \
        --model smollm2 --sft_steps 50
    python scripts/train_grpo.py --model runs/sft-smollm2/model ...
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sql_env.training.cli import parse_args
from sql_env.training.data import QuestionArguments


@dataclass
class SFTDataArguments(QuestionArguments):
    out: Path = field(
        default=Path("runs/sft_data"), metadata={"help": "Output directory."}
    )
    split: Literal["train", "dev"] = field(
        default="train", metadata={"help": "Split to build trajectories from."}
    )
    n: int | None = field(
        default=None, metadata={"help": "Seeded sample of N questions (default: all)."}
    )
    seed: int = field(default=0, metadata={"help": "Sampling seed."})
    max_answer_rows: int = field(
        default=20,
        metadata={
            "help": "Skip questions whose gold result has more rows (0: keep all)."
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
        default="smollm2",
        metadata={"help": "Model to fine-tune: 'tiny', 'smollm2' or a path / hub id."},
    )
    sft_steps: int = field(default=50, metadata={"help": "SFT optimizer steps."})
    learning_rate: float = field(default=5e-5, metadata={"help": "SFT learning rate."})
    batch_size: int = field(default=4, metadata={"help": "SFT batch size."})


def run_sft_on(dataset, args: SFTDataArguments) -> Path:
    """Fine-tune ``args.model`` on ``dataset``; return where it was saved."""
    import torch
    from trl import SFTConfig

    from sql_env.training.models import load_model
    from sql_env.training.sft import run_sft

    on_cpu = not torch.cuda.is_available()
    model, tokenizer = load_model(args.model, seed=args.seed)
    config = SFTConfig(
        output_dir=str(args.out / "sft_run"),
        max_steps=args.sft_steps,
        learning_rate=args.learning_rate,
        per_device_train_batch_size=args.batch_size,
        assistant_only_loss=True,
        max_length=4096,
        use_cpu=on_cpu,
        bf16=not on_cpu,
        gradient_checkpointing=not on_cpu,
        logging_steps=max(1, args.sft_steps // 10),
        report_to="none",
        save_strategy="no",
        seed=args.seed,
    )
    model = run_sft(model, tokenizer, dataset, config)
    target = args.out / "model"
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(SFTDataArguments, argv, description=__doc__.split("\n")[0])
    from sql_env.training.sft import sft_dataset

    questions = args.questions(args.split, args.n, args.seed)
    dataset = sft_dataset(
        questions, args.data_dir, args.env_url, args.max_answer_rows or None
    )
    args.out.mkdir(parents=True, exist_ok=True)
    dataset.save_to_disk(args.out / "dataset")
    sample = args.out / "sample.json"
    sample.write_text(json.dumps(dataset[0], indent=2, ensure_ascii=False) + "\n")
    print(f"{len(dataset)} trajectories from {len(questions)} {args.split} questions")
    print(f"wrote {args.out / 'dataset'}")
    print(f"wrote {sample}")
    if args.run_sft:
        print(f"wrote {run_sft_on(dataset, args)}")
    return args.out / "dataset"


if __name__ == "__main__":
    main()
