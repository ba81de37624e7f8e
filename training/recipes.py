"""Training settings per device class: precision, batch, memory savers, vLLM.

The notebook and ``scripts/train_grpo.py`` start from :func:`recipe_for_device`:
the GPU at hand (T4, L4, A100, H100, or another CUDA GPU) or the CPU picks
precision (bf16 where the GPU has it, fp16 on a T4, fp32 on CPU; weights stay
fp32, see ``models.py``), batch size, gradient accumulation, gradient
checkpointing, the KL weight and vLLM colocation (only when ``vllm`` is
installed). docs/training.md gives the memory each recipe needs and says which
figures are measured and which estimated.

:func:`grpo_config` and :func:`sft_config` turn a recipe into TRL configs; every
field can be overridden by keyword.
"""

import importlib.util
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Precision = Literal["fp32", "bf16", "fp16"]
# TRL's GRPO default, and the recipe's: fp32 master weights make it effective.
GRPO_LEARNING_RATE = 1e-6
SFT_LEARNING_RATE = 1e-5
SFT_MAX_LENGTH = 4096


@dataclass(frozen=True)
class Recipe:
    """Settings for one device class (see docs/training.md for its memory)."""

    device: str
    model: str
    precision: Precision
    per_device_train_batch_size: int
    num_generations: int
    gradient_accumulation_steps: int
    max_completion_length: int
    max_turns: int
    gradient_checkpointing: bool
    beta: float
    use_vllm: bool
    vllm_gpu_memory_utilization: float = 0.3
    learning_rate: float = GRPO_LEARNING_RATE
    sft_learning_rate: float = SFT_LEARNING_RATE
    sft_batch_size: int = 4
    # Qwen3 writes a <think> block each turn by default; off saves the budget.
    chat_template_kwargs: dict[str, Any] = field(
        default_factory=lambda: {"enable_thinking": False}
    )

    @property
    def on_cpu(self) -> bool:
        return self.device == "cpu"

    def precision_kwargs(self) -> dict[str, bool]:
        """``use_cpu``/``bf16``/``fp16`` for a TRL config (set explicitly: TRL
        defaults to bf16)."""
        return {
            "use_cpu": self.on_cpu,
            "bf16": self.precision == "bf16",
            "fp16": self.precision == "fp16",
        }


# What every GPU recipe shares: Qwen3-0.6B, bf16 autocast, KL 0.04, vLLM when
# installed, 1,024 completion tokens over 8 turns, gradient checkpointing.
_GPU = Recipe(
    device="gpu",
    model="Qwen/Qwen3-0.6B",
    precision="bf16",
    per_device_train_batch_size=8,
    num_generations=8,
    gradient_accumulation_steps=1,
    max_completion_length=1024,
    max_turns=8,
    gradient_checkpointing=True,
    beta=0.04,
    use_vllm=True,
)

RECIPES: dict[str, Recipe] = {
    # The tiny offline model: shows the pipeline, in minutes. Its tokenizer spends
    # more tokens per character than Qwen's, so one DESCRIBE result can fill a
    # small budget, and TRL ends a rollout at a tool result that would pass it.
    "cpu": Recipe(
        device="cpu",
        model="tiny",
        precision="fp32",
        per_device_train_batch_size=4,
        num_generations=4,
        gradient_accumulation_steps=1,
        max_completion_length=512,
        max_turns=4,
        gradient_checkpointing=False,
        beta=0.0,
        use_vllm=False,
        learning_rate=1e-4,
        sft_learning_rate=5e-3,
    ),
    # 16 GB, no bf16: fp16 autocast; no room for a reference model or vLLM.
    "t4": replace(
        _GPU,
        device="t4",
        precision="fp16",
        per_device_train_batch_size=2,
        gradient_accumulation_steps=4,
        beta=0.0,
        use_vllm=False,
        sft_batch_size=2,
    ),
    "l4": replace(
        _GPU,
        device="l4",
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        vllm_gpu_memory_utilization=0.2,
    ),
    "a100": replace(_GPU, device="a100", sft_batch_size=8),
    "h100": replace(
        _GPU, device="h100", per_device_train_batch_size=16, sft_batch_size=8
    ),
}
# Substrings of torch.cuda.get_device_name() -> recipe (H200/H800 share the H100's).
GPU_NAMES = {"T4": "t4", "L4": "l4", "A100": "a100", "H100": "h100", "H200": "h100"}


def device_class() -> str:
    """``"cpu"``, or the recipe name of the first CUDA GPU (``"l4"`` if unknown).

    An unknown GPU gets the L4's settings: the most conservative recipe with
    bf16, which every GPU newer than the T4 has.
    """
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    name = torch.cuda.get_device_name(0)
    for marker, recipe in GPU_NAMES.items():
        if marker in name:
            return recipe
    return "l4" if torch.cuda.is_bf16_supported() else "t4"


def vllm_available() -> bool:
    """True when ``vllm`` is installed (it is never a dependency of SQLEnv)."""
    return importlib.util.find_spec("vllm") is not None


def recipe_for_device(device: str | None = None) -> Recipe:
    """The recipe for ``device`` (default: this machine), vLLM only if installed.

    Raises:
        KeyError: ``device`` is not one of :data:`RECIPES`.
    """
    recipe = RECIPES[device or device_class()]
    if recipe.use_vllm and not vllm_available():
        recipe = replace(recipe, use_vllm=False)
    return recipe


def grpo_settings(recipe: Recipe) -> dict[str, Any]:
    """The ``GRPOConfig`` fields a recipe sets (TRL's defaults for the rest)."""
    settings: dict[str, Any] = {
        **recipe.precision_kwargs(),
        "learning_rate": recipe.learning_rate,
        "per_device_train_batch_size": recipe.per_device_train_batch_size,
        "num_generations": recipe.num_generations,
        "gradient_accumulation_steps": recipe.gradient_accumulation_steps,
        "max_completion_length": recipe.max_completion_length,
        "max_tool_calling_iterations": recipe.max_turns,
        "gradient_checkpointing": recipe.gradient_checkpointing,
        "beta": recipe.beta,
        "chat_template_kwargs": dict(recipe.chat_template_kwargs),
        "use_vllm": recipe.use_vllm,
        "logging_steps": 1,
        "report_to": "none",
        "save_strategy": "no",
    }
    if recipe.use_vllm:
        settings["vllm_mode"] = "colocate"
        settings["vllm_gpu_memory_utilization"] = recipe.vllm_gpu_memory_utilization
    return settings


def grpo_config(recipe: Recipe, output_dir: str, **overrides: Any) -> Any:
    """A ``trl.GRPOConfig`` with the recipe's settings; keywords override any.

    Args:
        recipe: From :func:`recipe_for_device`.
        output_dir: Where TRL writes (checkpoints are off unless overridden).
        **overrides: Any ``GRPOConfig`` field (``max_steps``, ``seed``, ...).
    """
    from trl import GRPOConfig

    return GRPOConfig(
        **{**grpo_settings(recipe), "output_dir": output_dir, **overrides}
    )


def sft_config(recipe: Recipe, output_dir: str, **overrides: Any) -> Any:
    """A ``trl.SFTConfig`` for the warm start (see ``sft.run_sft``).

    ``max_length`` is 4096 tokens, enough for every warm-start conversation of
    up to 20 answer rows; longer ones are dropped, never cut.
    """
    from trl import SFTConfig

    kwargs: dict[str, Any] = {
        **recipe.precision_kwargs(),
        "output_dir": output_dir,
        "learning_rate": recipe.sft_learning_rate,
        "per_device_train_batch_size": recipe.sft_batch_size,
        "gradient_checkpointing": recipe.gradient_checkpointing,
        "max_length": SFT_MAX_LENGTH,
        "assistant_only_loss": False,  # the mask comes from the GRPO rendering
        "report_to": "none",
        "save_strategy": "no",
    }
    kwargs.update(overrides)
    return SFTConfig(**kwargs)
