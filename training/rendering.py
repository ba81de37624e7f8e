"""Conversations as token ids, built the way TRL's GRPOTrainer builds a rollout.

GRPO never re-renders a conversation: it tokenizes the prompt once (with the
generation prompt), appends the tokens the model generated up to its
end-of-turn token, appends the tokens of the tool results (the chat template's
rendering of the tool messages plus the next generation prompt, cut after the
last end-of-turn token), and trains only on the generated tokens. This module
builds the same stream from a finished conversation, so that

- the SFT warm start (``sft.py``) trains on exactly the tokens and the loss mask
  a GRPO rollout of the same trajectory has, and
- the ``llm`` evaluation policy (``llm_policy.py``) feeds the model exactly the
  context it saw in training, turn after turn.

Everything goes through public transformers/TRL functions: the chat template
GRPO uses (:func:`training_chat_template`, TRL's training template when the
model's own is not prefix-preserving, as for Qwen3) and ``apply_chat_template``.
``tests/test_token_identity.py`` checks the result against a real GRPOTrainer.
"""

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase
from trl.chat_template_utils import (
    get_training_chat_template,
    is_chat_template_prefix_preserving,
)

Message = dict[str, Any]
# Saved next to a trained model, so evaluation renders as training did.
CHAT_TEMPLATE_KWARGS_FILE = "chat_template_kwargs.json"


class RenderingError(ValueError):
    """The chat template cannot render a conversation as GRPO would."""


def training_chat_template(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """The template GRPOTrainer renders tool conversations with (None: the model's).

    TRL swaps a template that is not prefix-preserving (Qwen3's drops earlier
    turns' ``<think>`` blocks) for its training variant.
    """
    if is_chat_template_prefix_preserving(tokenizer):
        return None
    return get_training_chat_template(tokenizer)


def save_chat_template_kwargs(model_dir: Path, kwargs: Mapping[str, Any]) -> Path:
    """Record the ``chat_template_kwargs`` a model was trained with."""
    path = Path(model_dir) / CHAT_TEMPLATE_KWARGS_FILE
    path.write_text(json.dumps(dict(kwargs)) + "\n", encoding="utf-8")
    return path


def load_chat_template_kwargs(model_dir: Path) -> dict[str, Any]:
    """The ``chat_template_kwargs`` saved with a model ({} if none or no dir)."""
    path = Path(model_dir) / CHAT_TEMPLATE_KWARGS_FILE
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


class ConversationRenderer:
    """Token ids of prompts, assistant turns and tool results, as GRPO makes them.

    Args:
        tokenizer: The model's tokenizer (its chat template must support tools).
        tools: Tool schemas or functions, in the order GRPO lists them.
        chat_template_kwargs: Passed to every ``apply_chat_template`` call, as
            ``GRPOConfig.chat_template_kwargs`` is (e.g. ``enable_thinking``).
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        tools: Sequence[Any],
        chat_template_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.tools = list(tools)
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.chat_template = training_chat_template(tokenizer)
        self.eos_token_id = tokenizer.eos_token_id

    def _ids(
        self,
        messages: Sequence[Message],
        add_generation_prompt: bool,
        tools: Sequence[Any] | None = None,
    ) -> list[int]:
        return list(
            self.tokenizer.apply_chat_template(
                list(messages),
                tools=tools or None,
                chat_template=self.chat_template,
                add_generation_prompt=add_generation_prompt,
                tokenize=True,
                return_dict=False,
                **self.chat_template_kwargs,
            )
        )

    def prompt_ids(self, messages: Sequence[Message]) -> list[int]:
        """The first prompt (system and question) up to the generation prompt."""
        return self._ids(messages, add_generation_prompt=True, tools=self.tools)

    def assistant_ids(self, history: Sequence[Message], message: Message) -> list[int]:
        """The tokens a model emits for ``message``, up to its end-of-turn token.

        Args:
            history: The conversation before ``message``.
            message: An assistant message (content and/or tool calls).

        Raises:
            RenderingError: The template renders ``history`` differently once
                ``message`` follows, or the turn has no end-of-turn token.
        """
        before = self._ids(history, add_generation_prompt=True, tools=self.tools)
        after = self._ids([*history, message], False, tools=self.tools)
        if after[: len(before)] != before:
            raise RenderingError(
                "The chat template is not prefix-preserving for this conversation."
            )
        turn = after[len(before) :]
        if self.eos_token_id not in turn:
            raise RenderingError("The assistant turn has no end-of-turn token.")
        return turn[: turn.index(self.eos_token_id) + 1]

    def tool_suffix_ids(self, tool_messages: Sequence[Message]) -> list[int]:
        """Tool results and the next generation prompt, as GRPO appends them.

        GRPO renders the tool messages after a stand-in conversation (a user
        message and an assistant call of the first tool) and keeps what follows
        that conversation's last end-of-turn token; so does this.
        """
        stand_in: list[Message] = [
            {"role": "user", "content": "dummy"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "type": "function",
                        "function": {"name": tool_messages[0]["name"], "arguments": {}},
                    }
                ],
            },
        ]
        prefix = self._ids(stand_in, add_generation_prompt=False)
        ends = [i for i, token in enumerate(prefix) if token == self.eos_token_id]
        if ends:
            prefix = prefix[: ends[-1] + 1]
        full = self._ids([*stand_in, *tool_messages], add_generation_prompt=True)
        if full[: len(prefix)] != prefix:
            raise RenderingError("Tool results do not extend the conversation.")
        return full[len(prefix) :]

    def conversation_ids(
        self, messages: Sequence[Message]
    ) -> tuple[list[int], list[int]]:
        """A whole episode as one GRPO rollout: token ids and the loss mask.

        Args:
            messages: System and user messages, then assistant turns, each
                followed by the tool messages its calls produced.

        Returns:
            ``(input_ids, loss_mask)``; the mask is 1 on the tokens the model
            generates (assistant turns with their end-of-turn token), 0 on the
            prompt and on tool results, as GRPO's ``completion_mask * tool_mask``.
        """
        first = next(
            (i for i, m in enumerate(messages) if m["role"] == "assistant"), None
        )
        if first is None:
            raise RenderingError("The conversation has no assistant turn.")
        ids = self.prompt_ids(messages[:first])
        mask = [0] * len(ids)
        index = first
        while index < len(messages):
            message = messages[index]
            if message["role"] != "assistant":
                raise RenderingError(
                    f"Message {index} is a {message['role']!r} message where an "
                    "assistant turn was expected."
                )
            turn = self.assistant_ids(messages[:index], message)
            ids += turn
            mask += [1] * len(turn)
            end = index + 1
            while end < len(messages) and messages[end]["role"] == "tool":
                end += 1
            if end > index + 1:
                suffix = self.tool_suffix_ids(messages[index + 1 : end])
                ids += suffix
                mask += [0] * len(suffix)
            index = end
        return ids, mask
