"""The episodes the benchmark replays, drawn from the built question bank.

Every episode of the mix is one question played DESCRIBE, SAMPLE, QUERY (its
gold SQL) and ANSWER (its gold rows): each action type once, every answer
correct. The plans are plain data (question ids, SQL, answer text), so the same
mix can be sent to any server, and to an engine of another checkout.
"""

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sql_env.server.question_bank import Question, load_bank


@dataclass(frozen=True)
class EpisodePlan:
    """One episode of the mix: a question and the four actions played on it."""

    question_id: str
    db_id: str
    gold_sql: str
    actions: tuple[tuple[str, str], ...]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def answer_text(question: Question) -> str:
    """The question's gold rows as the JSON answer an agent would send."""
    return json.dumps([list(row) for row in question.gold_rows], default=str)


def build_plans(data_dir: Path, split: str, n: int, seed: int) -> list[EpisodePlan]:
    """A seeded sample of ``n`` playable questions of ``split``, as plans."""
    bank = load_bank(data_dir)
    questions = sorted(bank.eligible(split), key=lambda q: q.id)
    picked = random.Random(seed).sample(questions, min(n, len(questions)))
    plans = []
    for q in picked:
        table = q.tables_used[0] if q.tables_used else ""
        actions = (
            ("DESCRIBE", table),
            ("SAMPLE", table),
            ("QUERY", q.gold_sql),
            ("ANSWER", answer_text(q)),
        )
        plans.append(EpisodePlan(q.id, q.db_id, q.gold_sql, actions))
    return plans


def largest_gold(data_dir: Path, split: str = "train") -> Question:
    """The playable question of ``split`` whose gold result has the most rows."""
    return max(load_bank(data_dir).eligible(split), key=lambda q: len(q.gold_rows))
