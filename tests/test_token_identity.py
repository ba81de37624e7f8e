"""SFT, GRPO and evaluation see one token stream, checked against TRL itself.

For one gold trajectory (the oracle's episode on a tiny train question), three
real runs are compared token by token, for the tiny Qwen2 (TRL's
``qwen2_5.jinja``) and the tiny Qwen3 (TRL's ``qwen3.jinja``, which GRPO swaps
for its training template), with and without ``enable_thinking``, in the
default episode settings (schema hidden, answers by value) and with the schema
given and answers by SQL (the settings travel in the GRPO rows, the SFT data
and the evaluation's environment):

- SFT: what a real ``SFTTrainer`` feeds the model (input ids and labels, taken
  from its dataloader) when ``run_sft`` trains on the trajectory;
- GRPO: what a real ``GRPOTrainer`` with ``environment_factory`` builds for the
  loss (prompt and completion ids, ``completion_mask * tool_mask``), with the
  model made to replay the trajectory's assistant turns: TRL renders the prompt,
  parses each tool call, runs it in the environment and appends the result;
- evaluation: every context ``TransformersPolicy`` feeds the model during an
  episode of the same question.

The replay forces the model's next token to follow the SFT stream wherever the
context so far agrees with it, and to end the turn wherever it does not: a
prompt, tool list or tool result rendered differently anywhere makes the runs
diverge and the comparison fail.
"""

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import TrainerCallback
from trl import GRPOTrainer

from sql_env.server.question_bank import load_bank
from sql_env.training.data import select_questions
from sql_env.training.environment import SQLToolEnv, make_env_factory
from sql_env.training.evaluation import evaluate
from sql_env.training.grpo import grpo_dataset
from sql_env.training.llm_policy import TransformersPolicy
from sql_env.training.models import load_model
from sql_env.training.recipes import grpo_config, recipe_for_device, sft_config
from sql_env.training.settings import EpisodeSettings
from sql_env.training.sft import run_sft, sft_dataset

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

DEFAULT = EpisodeSettings()
GIVEN_SQL = EpisodeSettings(schema="given", answer="sql")
CASES = [
    pytest.param("tiny", {}, DEFAULT, id="qwen2"),
    pytest.param("tiny-qwen3", {}, DEFAULT, id="qwen3-thinking"),
    pytest.param(
        "tiny-qwen3", {"enable_thinking": False}, DEFAULT, id="qwen3-no-thinking"
    ),
    pytest.param("tiny", {}, GIVEN_SQL, id="qwen2-schema-given-sql"),
    pytest.param(
        "tiny-qwen3",
        {"enable_thinking": False},
        GIVEN_SQL,
        id="qwen3-no-thinking-schema-given-sql",
    ),
]
LARGE = 1e4
CPU = recipe_for_device("cpu")


class Replay:
    """Make a model's next token follow ``target`` while its context agrees.

    Generation is run without a KV cache, so each forward pass sees the whole
    context; the hook records every context and rewrites the last position's
    logits. Training forward passes (fused, no logits) are left alone.
    """

    def __init__(self, model: Any, target: list[int], stop_id: int) -> None:
        self.target = target
        self.stop_id = stop_id
        self.contexts: list[list[int]] = []
        model.generation_config.use_cache = False
        self.handle = model.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module: Any, args: Any, kwargs: dict, output: Any) -> Any:
        logits = getattr(output, "logits", None)
        if logits is None:
            return output
        ids = kwargs["input_ids"]
        mask = kwargs.get("attention_mask")
        for row in range(ids.shape[0]):
            keep = mask[row].bool() if mask is not None else slice(None)
            context = ids[row][keep].tolist()
            self.contexts.append(context)
            n = len(context)
            agrees = n < len(self.target) and self.target[:n] == context
            forced = self.target[n] if agrees else self.stop_id
            logits[row, -1] = -LARGE
            logits[row, -1, forced] = LARGE
        return output


class CaptureBatches(TrainerCallback):
    """Keep the batches SFTTrainer's dataloader yields."""

    def __init__(self) -> None:
        self.batches: list[dict[str, torch.Tensor]] = []

    def on_train_begin(self, args, state, control, train_dataloader=None, **_):
        self.batches = [dict(batch) for batch in train_dataloader]


class CapturingGRPOTrainer(GRPOTrainer):
    """GRPOTrainer that keeps the inputs of each loss computation."""

    captured: list[dict[str, Any]]

    def compute_loss(self, model, inputs, *args, **kwargs):
        self.captured = [*getattr(self, "captured", []), dict(inputs)]
        return super().compute_loss(model, inputs, *args, **kwargs)


def trajectory(data_dir: Path, settings: EpisodeSettings):
    """A gold SFT example in ``settings`` and its question."""
    question = select_questions(load_bank(data_dir), "train")[0]
    dataset = sft_dataset([question], data_dir, settings=settings)
    (final,) = dataset[0]["messages"][-3]["tool_calls"]
    expected = question.gold_sql if settings.answer == "sql" else None
    assert final["function"]["name"] == "answer"
    assert expected in (None, final["function"]["arguments"]["value"])
    return question, dataset


def sft_stream(model, tokenizer, dataset, kwargs, tmp_path):
    """Input ids and loss mask of the one example, as SFTTrainer fed them."""
    capture = CaptureBatches()
    config = sft_config(
        CPU,
        str(tmp_path / "sft"),
        max_steps=1,
        per_device_train_batch_size=1,
        disable_tqdm=True,
    )
    run_sft(model, tokenizer, dataset, config, kwargs, callbacks=[capture])
    (batch,) = capture.batches
    ids = batch["input_ids"][0].tolist()
    labels = batch["labels"][0].tolist()
    return ids, [int(label != -100) for label in labels]


def grpo_stream(model, tokenizer, question, data_dir, kwargs, settings, tmp_path):
    """Ids and loss mask of each rollout a real GRPOTrainer built, on ``question``."""
    config = grpo_config(
        CPU,
        str(tmp_path / "grpo"),
        per_device_train_batch_size=2,
        num_generations=2,
        max_completion_length=2048,
        max_tool_calling_iterations=10,
        max_steps=1,
        learning_rate=0.0,
        chat_template_kwargs=kwargs,
        disable_tqdm=True,
    )
    trainer = CapturingGRPOTrainer(
        model=model,
        args=config,
        train_dataset=grpo_dataset([question, question], settings),
        processing_class=tokenizer,
        environment_factory=make_env_factory(data_dir),
    )
    trainer.train()
    (inputs,) = trainer.captured
    streams = []
    for row in range(inputs["prompt_ids"].shape[0]):
        prompt = inputs["prompt_ids"][row][inputs["prompt_mask"][row].bool()]
        present = inputs["completion_mask"][row].bool()
        completion = inputs["completion_ids"][row][present]
        trained = (inputs["completion_mask"][row] * inputs["tool_mask"][row])[present]
        streams.append(
            (
                prompt.tolist() + completion.tolist(),
                [0] * len(prompt) + trained.tolist(),
            )
        )
    return streams, trainer.state.log_history[0]["reward"]


@pytest.mark.parametrize(("model_name", "kwargs", "settings"), CASES)
def test_sft_grpo_and_evaluation_render_one_token_stream(
    model_name: str,
    kwargs: dict,
    settings: EpisodeSettings,
    tiny_data_dir: Path,
    tmp_path: Path,
) -> None:
    question, dataset = trajectory(tiny_data_dir, settings)
    start = dataset[0]["messages"][1]["content"]
    assert ("CREATE TABLE" in start) is (settings.schema == "given")
    assert f"ANSWER({settings.answer})" in start
    model, tokenizer = load_model(model_name)
    sft_ids, sft_mask = sft_stream(model, tokenizer, dataset, kwargs, tmp_path)
    # The loss covers every generated turn and nothing else: one end-of-turn
    # token per assistant message, and no token after the last one.
    assistant_turns = sum(m["role"] == "assistant" for m in dataset[0]["messages"])
    trained = [t for t, m in zip(sft_ids, sft_mask, strict=True) if m]
    assert trained.count(tokenizer.eos_token_id) == assistant_turns
    assert sft_ids[-1] == tokenizer.eos_token_id and sft_mask[-1] == 1

    replay = Replay(model, sft_ids, tokenizer.eos_token_id)
    streams, reward = grpo_stream(
        model, tokenizer, question, tiny_data_dir, kwargs, settings, tmp_path
    )
    assert reward == 1.0  # the environment ran the replayed calls and accepted
    for grpo_ids, grpo_mask in streams:
        assert grpo_ids == sft_ids
        assert grpo_mask == sft_mask

    replay.contexts.clear()
    policy = TransformersPolicy(
        model, tokenizer, max_new_tokens=512, chat_template_kwargs=kwargs
    )
    with SQLToolEnv(tiny_data_dir, reset_settings=settings.reset_kwargs()) as env:
        (episode,) = evaluate(env, policy, [question], max_turns=10, progress=False)
    assert episode.success
    assert episode.messages == dataset[0]["messages"]
    assert all(sft_ids[: len(c)] == c for c in replay.contexts)
    # The evaluation generated every turn up to the answer call's end-of-turn
    # token (the closing turn after the answer is the runner's, not the model's).
    ends = [i for i, t in enumerate(sft_ids) if t == tokenizer.eos_token_id]
    answer_end = [i for i in ends if sft_mask[i]][-2]
    assert max(len(c) for c in replay.contexts) == answer_end
