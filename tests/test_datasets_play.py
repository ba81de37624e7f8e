"""Spider, BIRD and a custom dataset, built side by side and played in every setting.

The data is built by the real build (``sql_env.ingest``) from sources in each
dataset's published layout (``tests/source_fixtures.py``) into one data
directory, and one environment serves all three. For every dataset x schema
(hidden, given) x answer mode (value, sql), on every playable question: the
oracle (the gold rows as JSON, or the gold SQL) scores 1 and a perturbed answer
scores 0; the schema and the evidence appear exactly when asked; no observation
before the answer, and no state, carries the gold.
"""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sql_env.ingest.build import build
from sql_env.models import ANSWER_MODES, SCHEMA_MODES, SQLAction, SQLObservation
from sql_env.server.app import build_app
from sql_env.server.question_bank import Question, load_bank
from sql_env.server.sql_environment import SQLEnvironment
from tests.conftest import make_spider_source
from tests.source_fixtures import make_bird_zips, make_custom_source

DATASETS = ("spider", "bird", "custom")


@pytest.fixture(scope="module")
def multi_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("multi")
    data_dir = root / "data"
    build("spider", [str(make_spider_source(root / "spider_src"))], data_dir)
    zips = make_bird_zips(root / "bird_src")
    build("bird", [str(zips["dev"]), str(zips["train"])], data_dir)
    build("custom", [str(make_custom_source(root / "custom_src"))], data_dir)
    return data_dir


def playable(data_dir: Path, dataset: str) -> Iterator[Question]:
    bank = load_bank(data_dir, dataset)
    for split in bank.splits:
        yield from bank.eligible(split)


def right_and_wrong(question: Question, answer_mode: str) -> tuple[str, str]:
    if answer_mode == "sql":
        return question.gold_sql, f"SELECT * FROM ({question.gold_sql}) LIMIT 0"
    rows = [list(row) for row in question.gold_rows]
    return json.dumps(rows), json.dumps([*rows, ["not a gold value"]])


def gold_free(question: Question, *payloads: object) -> bool:
    text = " ".join(json.dumps(p, default=str) for p in payloads)
    rows = json.dumps([list(r) for r in question.gold_rows])
    return question.gold_sql not in text and rows not in text


@pytest.mark.parametrize("answer_mode", ANSWER_MODES)
@pytest.mark.parametrize("schema_mode", SCHEMA_MODES)
@pytest.mark.parametrize("dataset", DATASETS)
def test_the_oracle_scores_every_question_and_a_perturbed_answer_none(
    multi_data: Path, dataset: str, schema_mode: str, answer_mode: str
) -> None:
    env = SQLEnvironment(multi_data)
    played = 0
    for question in playable(multi_data, dataset):
        right, wrong = right_and_wrong(question, answer_mode)
        for answer, reward in ((right, 1.0), (wrong, 0.0)):
            start = env.reset(
                question_id=question.id, schema=schema_mode, answer=answer_mode
            )
            assert start.question == question.question
            assert start.evidence == question.evidence
            assert bool(start.db_schema) is (schema_mode == "given")
            assert f"ANSWER({answer_mode})" in start.instructions
            look = env.step(SQLAction(action_type="DESCRIBE", argument=start.tables[0]))
            assert gold_free(question, start.model_dump(), look.model_dump())
            end = env.step(SQLAction(action_type="ANSWER", argument=answer))
            assert end.done and end.reward == reward, (question.id, end.result)
            assert gold_free(question, env.state.model_dump())
        played += 1
    assert played >= 3


@pytest.mark.parametrize("dataset", DATASETS)
def test_evidence_is_shown_unless_hidden(multi_data: Path, dataset: str) -> None:
    env = SQLEnvironment(multi_data)
    with_evidence = [q for q in playable(multi_data, dataset) if q.evidence]
    if dataset == "spider":
        assert not with_evidence  # Spider has none
        return
    assert with_evidence
    for question in with_evidence:
        shown = env.reset(question_id=question.id)
        hidden = env.reset(question_id=question.id, evidence=False)
        assert shown.evidence == question.evidence and hidden.evidence == ""
        assert "evidence" in shown.instructions
        assert "evidence" not in hidden.instructions


def test_one_server_serves_every_built_dataset(multi_data: Path) -> None:
    with TestClient(build_app(multi_data, max_concurrent_envs=4)) as client:
        assert client.get("/health").json() == {"status": "healthy"}
        splits = {s["name"] for s in client.get("/sql_env/splits").json()}
        assert {"spider/dev", "bird/dev", "bird/train", "custom/train"} <= splits
        with client.websocket_connect("/ws") as ws:
            for dataset, split in (("bird", "dev"), ("custom", "dev"), (None, "dev")):
                data = {"split": split, "seed": 1}
                if dataset:
                    data["dataset"] = dataset
                ws.send_json({"type": "reset", "data": data})
                reply = ws.receive_json()["data"]
                obs = SQLObservation.model_validate(reply["observation"])
                assert obs.question_id.startswith(f"{dataset or 'spider'}/{split}/")
            ws.send_json({"type": "state"})
            assert ws.receive_json()["data"]["dataset"] == "spider"


def test_difficulty_filters_per_dataset(multi_data: Path) -> None:
    env = SQLEnvironment(multi_data)
    bank = load_bank(multi_data, "bird")
    for level in bank.levels:
        pool = bank.eligible("dev", difficulty=level)
        if pool:
            obs = env.reset(dataset="bird", split="dev", difficulty=level, seed=0)
            assert obs.question_id in {q.id for q in pool}
    with pytest.raises(ValueError, match="Unknown difficulty 'easy' of bird"):
        env.reset(dataset="bird", split="dev", difficulty="easy")


def test_a_database_filter_keeps_to_that_database(multi_data: Path) -> None:
    env = SQLEnvironment(multi_data)
    bank = load_bank(multi_data, "bird")
    databases = sorted({q.db_id for q in bank.eligible("dev")})
    assert len(databases) >= 2  # so a broken filter would show
    for db_id in databases:
        for seed in range(8):
            obs = env.reset(dataset="bird", split="dev", db_id=db_id, seed=seed)
            assert obs.db_id == db_id
    with pytest.raises(ValueError, match="belongs to split"):
        env.reset(dataset="bird", split="train", db_id=databases[0])
