# /// script
# requires-python = ">=3.11"
# dependencies = ["openenv-sql-env[train]"]
#
# # Not on PyPI: `uv run scripts/overfit_check.py` installs SQLEnv from this checkout.
# [tool.uv.sources]
# openenv-sql-env = { path = "..", editable = true }
# ///
"""Overfit a handful of train questions: the check that the recipe learns.

A tiny model is warm-started by SFT on the gold trajectories of a few easy train
questions, then trained with GRPO through environment_factory on the same
questions; its greedy success on them is measured before training, after SFT
and after GRPO (sql_env.training.overfit). Rising from 0 to near 1 shows that
rewards, loss masks and gradients flow end to end; it says nothing about
generalisation. Writes OUT/overfit.json, OUT/overfit.png and
OUT/grpo/learning_curve.png (the reward curve). CPU only, a few minutes.

    make train-overfit
    python scripts/overfit_check.py --out runs/overfit --seed 1
"""

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from sql_env.server.question_bank import DEFAULT_DATA_DIR
from sql_env.training.cli import parse_args


@dataclass
class OverfitArguments:
    out: Path = field(default=Path("runs/overfit"), metadata={"help": "Output dir."})
    data_dir: Path = field(
        default=DEFAULT_DATA_DIR, metadata={"help": "Built data directory."}
    )
    seed: int = field(default=0, metadata={"help": "Seed (model, sampling)."})
    grpo_steps: int | None = field(
        default=None, metadata={"help": "GRPO steps (default: the check's)."}
    )


def main() -> None:
    args = parse_args(OverfitArguments, description=__doc__.split("\n")[0])
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from sql_env.training.overfit import (
        STAGES_PLOT,
        SUMMARY,
        OverfitSettings,
        run_overfit,
    )

    settings = OverfitSettings(seed=args.seed)
    if args.grpo_steps is not None:
        settings.grpo_steps = args.grpo_steps
    started = time.perf_counter()
    result = run_overfit(args.out, args.data_dir, settings)
    minutes = (time.perf_counter() - started) / 60
    print(
        f"greedy success on {len(result.question_ids)} train questions: "
        f"{result.success_before:.0%} before, {result.success_after_sft:.0%} after "
        f"SFT, {result.success_after_grpo:.0%} after GRPO ({minutes:.1f} min)"
    )
    first, last = result.grpo_success[:5], result.grpo_success[-5:]
    print(
        "GRPO sampled success, first and last 5 steps: "
        f"{sum(first) / len(first):.2f} -> {sum(last) / len(last):.2f}"
    )
    print(json.dumps(result.seconds))
    for name in (SUMMARY, STAGES_PLOT, "grpo/learning_curve.png"):
        print(f"wrote {args.out / name}")


if __name__ == "__main__":
    main()
