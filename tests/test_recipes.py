"""Device recipes: precision and settings per GPU class, TRL configs from them.

No GPU here: the GPU recipes are checked as settings (what they would pass to
``GRPOConfig``); transformers refuses to build a bf16 config on a CPU machine,
so only the CPU and fp16 (T4) configs are built for real.
"""

import pytest

from sql_env.training.recipes import (
    RECIPES,
    SFT_MAX_LENGTH,
    device_class,
    grpo_config,
    grpo_settings,
    recipe_for_device,
    sft_config,
    vllm_available,
)


def test_this_machine_gets_the_cpu_recipe() -> None:
    assert device_class() == "cpu"
    recipe = recipe_for_device()
    assert recipe.device == "cpu" and recipe.model == "tiny"
    config = grpo_config(recipe, "unused", max_steps=1)
    assert config.use_cpu and not config.bf16 and not config.fp16
    assert config.chat_template_kwargs == {"enable_thinking": False}


@pytest.mark.parametrize(
    ("device", "precision"),
    [("t4", "fp16"), ("l4", "bf16"), ("a100", "bf16"), ("h100", "bf16")],
)
def test_gpu_recipes_use_mixed_precision_the_gpu_has(device, precision) -> None:
    settings = grpo_settings(RECIPES[device])
    assert settings["bf16"] is (precision == "bf16")
    assert settings["fp16"] is (precision == "fp16")
    assert not settings["use_cpu"]
    assert settings["chat_template_kwargs"] == {"enable_thinking": False}
    # TRL needs whole groups in a generation batch.
    batch = settings["per_device_train_batch_size"]
    generation_batch = batch * settings["gradient_accumulation_steps"]
    assert generation_batch % settings["num_generations"] == 0


def test_vllm_only_when_installed() -> None:
    assert RECIPES["a100"].use_vllm
    assert recipe_for_device("a100").use_vllm is vllm_available()
    settings = grpo_settings(RECIPES["a100"])
    assert settings["vllm_mode"] == "colocate"


def test_t4_builds_an_fp16_config() -> None:
    config = grpo_config(RECIPES["t4"], "unused", use_cpu=True, fp16=False)
    assert config.gradient_accumulation_steps == 4
    assert config.generation_batch_size == 8


def test_sft_config_keeps_whole_conversations() -> None:
    config = sft_config(recipe_for_device("cpu"), "unused")
    assert config.max_length == SFT_MAX_LENGTH == 4096
    assert not config.assistant_only_loss  # the mask comes from the rendering
