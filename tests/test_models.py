"""Models come back trainable: fp32 master weights, tool templates TRL knows.

The precision test saves a tiny Qwen3 checkpoint that declares bfloat16, as
Qwen3's do, loads it with ``load_model`` and takes one real SFTTrainer step at
the recipe's learning rate 1e-6 with bf16 mixed precision: every tensor must
move. The same step on the weights ``dtype="auto"`` gives (pure bf16) shows
what the check catches.
"""

import json
import os
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM
from trl import SFTConfig
from trl.chat_template_utils import (
    is_chat_template_prefix_preserving,
    supports_tool_calling,
)

from sql_env.server.question_bank import load_bank
from sql_env.training.data import select_questions
from sql_env.training.models import (
    build_tiny_model,
    build_tiny_qwen3_model,
    load_model,
)
from sql_env.training.recipes import GRPO_LEARNING_RATE
from sql_env.training.sft import run_sft, sft_dataset

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


@pytest.fixture(scope="module")
def bf16_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen3 saved in bfloat16, its config declaring that dtype."""
    path = tmp_path_factory.mktemp("bf16_checkpoint")
    model, tokenizer = build_tiny_qwen3_model()
    model.to(torch.bfloat16).save_pretrained(path)
    tokenizer.save_pretrained(path)
    assert json.loads((path / "config.json").read_text())["dtype"] == "bfloat16"
    return path


def share_changed_by_one_step(model, tokenizer, data_dir: Path, out: Path):
    """Per tensor, the share of elements one SFT step at lr 1e-6 changed."""
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    questions = select_questions(load_bank(data_dir), "train")
    config = SFTConfig(
        output_dir=str(out),
        max_steps=1,
        learning_rate=GRPO_LEARNING_RATE,
        per_device_train_batch_size=len(questions),
        use_cpu=True,
        bf16=True,
        max_length=4096,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
    )
    run_sft(model, tokenizer, sft_dataset(questions, data_dir), config)
    return {
        name: (p.detach() != before[name]).float().mean().item()
        for name, p in model.named_parameters()
        if p.requires_grad
    }


def test_one_step_at_lr_1e_6_changes_every_trainable_tensor(
    bf16_checkpoint: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    model, tokenizer = load_model(str(bf16_checkpoint))
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    changed = share_changed_by_one_step(model, tokenizer, tiny_data_dir, tmp_path)
    assert min(changed.values()) > 0.99, changed


def test_pure_bf16_weights_lose_that_step(
    bf16_checkpoint: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    _, tokenizer = load_model(str(bf16_checkpoint))
    model = AutoModelForCausalLM.from_pretrained(bf16_checkpoint, dtype="auto")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    changed = share_changed_by_one_step(model, tokenizer, tiny_data_dir, tmp_path)
    assert min(changed.values()) == 0.0  # the norm weights (1.0) never move
    assert sum(changed.values()) / len(changed) < 0.1


@pytest.mark.parametrize(
    ("build", "prefix_preserving"),
    [
        pytest.param(build_tiny_model, True, id="qwen2"),
        pytest.param(build_tiny_qwen3_model, False, id="qwen3"),
    ],
)
def test_tiny_models_have_tool_templates_trl_knows(build, prefix_preserving) -> None:
    model, tokenizer = build()
    assert supports_tool_calling(tokenizer)
    # Qwen3's original template drops earlier <think> blocks: GRPO swaps it.
    assert is_chat_template_prefix_preserving(tokenizer) is prefix_preserving
    assert sum(p.numel() for p in model.parameters()) < 300_000
    ids = tokenizer("<tool_call>x</tool_call>")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids)[0] == "<tool_call>"
    assert model.generation_config.eos_token_id == tokenizer.convert_tokens_to_ids(
        "<|im_end|>"
    )


def test_tiny_qwen3_has_qwen3_special_tokens() -> None:
    _, tokenizer = build_tiny_qwen3_model()
    assert tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.eos_token == "<|im_end|>"
    text = "<think>\n\n</think>\n\n<tool_call>"
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(text)["input_ids"])
    assert tokens == ["<think>", "ĊĊ", "</think>", "ĊĊ", "<tool_call>"]
