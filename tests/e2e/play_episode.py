"""Play one full SQLEnv episode against a running server and check that it scores.

The player knows the answer: it reads the question's gold rows from the same built
data the server uses (test side only), explores with DESCRIBE, SAMPLE and QUERY, then
answers. Used by the tests and as ``make container-test``'s SMOKE_HOOK:

    python tests/e2e/play_episode.py http://127.0.0.1:7860 --data-dir build/space/data
"""

import argparse
import json
import sys
from pathlib import Path

from openenv.core.client_types import StepResult

from sql_env import SQLEnvClient
from sql_env.models import SQLObservation
from sql_env.server.question_bank import Question, load_bank


def first_question(data_dir: Path, split: str = "dev") -> Question:
    """The first playable question of ``split`` whose gold rows are plain JSON."""
    for question in load_bank(data_dir).eligible(split):
        try:
            json.dumps(question.gold_rows)
        except TypeError:
            continue
        return question
    raise LookupError(f"no playable {split} question in {data_dir}")


def play(env, question: Question) -> StepResult[SQLObservation]:
    """Reset on ``question``, explore, answer with its gold rows; returns the last step.

    Args:
        env: A connected ``SQLEnvClient`` in synchronous use (``.sync()``).
        question: The question to play, with its gold rows.

    Raises:
        AssertionError: An observation is not what the protocol promises.
    """
    obs = env.reset(question_id=question.id).observation
    assert obs.question_id == question.id and obs.question == question.question, obs
    assert obs.tables and not obs.done, obs
    table = question.tables_used[0] if question.tables_used else obs.tables[0]
    for step in (env.describe(table), env.sample(table)):
        assert not step.observation.error and step.observation.result, step
    step = env.query(question.gold_sql)
    assert not step.observation.error, step.observation.error
    result = env.answer(json.dumps([list(row) for row in question.gold_rows]))
    assert result.done and result.observation.answer_correct, result
    assert result.reward == 1.0, result.reward
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="Server base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--split", default="dev")
    args = parser.parse_args(argv)
    question = first_question(args.data_dir.resolve(), args.split)
    with SQLEnvClient(base_url=args.url).sync() as env:
        result = play(env, question)
        state = env.state()
    correct = result.observation.answer_correct
    sys.stdout.write(
        f"played {question.id} on {question.db_id}: reward {result.reward}, "
        f"{state.step_count} steps, answer_correct={correct}\n"
    )


if __name__ == "__main__":
    main()
