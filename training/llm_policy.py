"""Chat-model policies for evaluation, prompted with the training tool schema.

:class:`TransformersPolicy` generates with a local model and feeds it exactly the
context GRPO training built (:mod:`sql_env.training.rendering`): the prompt
rendered once with TRL's training template (for Qwen3 the one that keeps earlier
turns' reasoning), the model's own generated tokens, and the tool results as TRL
appends them, with the same ``chat_template_kwargs``. Tool calls are parsed with
TRL's ``parse_response``. ``tests/test_token_identity.py`` checks each turn's
context against a real GRPOTrainer's rollout.
:class:`OpenAIPolicy` asks any OpenAI-compatible chat endpoint (vLLM, llama.cpp
server, a hosted API) with the same tools; the endpoint renders with the
template it serves, so it matches training only if that is the same template.
"""

import json
from collections.abc import Mapping
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl.chat_template_utils import add_response_schema, parse_response

from sql_env.models import SQLObservation
from sql_env.training.environment import tool_schemas
from sql_env.training.rendering import ConversationRenderer
from sql_env.training.rollout import Message, assistant_message

DEFAULT_MAX_NEW_TOKENS = 256


class TransformersPolicy:
    """Sample each assistant turn from a local causal LM, in GRPO's token stream.

    Args:
        model: The chat model.
        tokenizer: Its tokenizer, with a tool-calling chat template TRL knows.
        max_new_tokens: Tokens per assistant turn.
        temperature: Sampling temperature; 0 means greedy.
        seed: Seed for sampling.
        chat_template_kwargs: What GRPO was trained with (``GRPOConfig.
            chat_template_kwargs``, e.g. ``{"enable_thinking": False}``).
    """

    name = "llm"

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        temperature: float = 0.0,
        seed: int = 0,
        chat_template_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self._model = model.eval()
        self._tokenizer = tokenizer
        if getattr(tokenizer, "response_template", None) is None and (
            getattr(tokenizer, "response_schema", None) is None
        ):
            add_response_schema(tokenizer)
        self._tools = tool_schemas()
        self._renderer = ConversationRenderer(
            tokenizer, self._tools, chat_template_kwargs
        )
        self._max_new_tokens = max_new_tokens
        self._temperature = temperature
        stop = model.generation_config.eos_token_id
        stop = stop if isinstance(stop, list) else [stop]
        self._stop_ids = {tokenizer.eos_token_id, *(s for s in stop if s is not None)}
        self._ids: list[int] = []
        self._seen = 0
        torch.manual_seed(seed)

    def begin(self, observation: SQLObservation) -> None:
        """Forget the previous episode's tokens."""
        self._ids = []
        self._seen = 0

    def context_ids(self, messages: list[Message]) -> list[int]:
        """The tokens the model continues from for the next turn of ``messages``.

        The first call renders the prompt; later ones append the tool results
        that arrived since the last turn, after the model's own tokens.
        """
        if not self._ids:
            self._ids = self._renderer.prompt_ids(messages)
        else:
            tools = messages[self._seen :]
            if tools:
                self._ids += self._renderer.tool_suffix_ids(tools)
        self._seen = len(messages)
        return list(self._ids)

    @torch.no_grad()
    def act(self, messages: list[Message]) -> Message:
        prompt_ids = self.context_ids(messages)
        inputs = torch.tensor([prompt_ids], device=self._model.device)
        sampling = (
            {"do_sample": True, "temperature": self._temperature}
            if self._temperature > 0
            else {"do_sample": False}
        )
        output = self._model.generate(
            inputs,
            attention_mask=torch.ones_like(inputs),
            max_new_tokens=self._max_new_tokens,
            pad_token_id=self._tokenizer.pad_token_id,
            **sampling,
        )
        completion = output[0, inputs.shape[1] :].tolist()
        # GRPO keeps a turn up to its first end-of-turn token.
        ends = [i for i, token in enumerate(completion) if token in self._stop_ids]
        if ends:
            completion = completion[: ends[0] + 1]
        self._ids += completion
        self._seen += 1  # the message returned below
        parsed = parse_response(
            self._tokenizer, completion, prefix=prompt_ids, tools=self._tools
        )
        message: Message = {"role": "assistant", "content": parsed.get("content") or ""}
        if parsed.get("tool_calls"):
            message["tool_calls"] = parsed["tool_calls"]
        return message


class OpenAIPolicy:
    """Ask an OpenAI-compatible chat endpoint for each assistant turn.

    Args:
        base_url: Endpoint base URL, e.g. ``http://localhost:8001/v1``.
        model: Model name the endpoint serves.
        api_key: API key (``"EMPTY"`` for local servers).
        temperature: Sampling temperature.
        max_tokens: Tokens per assistant turn.
    """

    name = "llm"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "EMPTY",
        temperature: float = 0.0,
        max_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    ) -> None:
        from openai import OpenAI

        self._client = OpenAI(base_url=base_url, api_key=api_key)
        self._model = model
        self._temperature = temperature
        self._max_tokens = max_tokens
        self._tools = tool_schemas()

    def begin(self, observation: SQLObservation) -> None:
        """Nothing to prepare: the endpoint is stateless."""

    def act(self, messages: list[Message]) -> Message:
        reply = (
            self._client.chat.completions.create(
                model=self._model,
                messages=_to_openai(messages),
                tools=self._tools,
                temperature=self._temperature,
                max_tokens=self._max_tokens,
            )
            .choices[0]
            .message
        )
        calls = []
        for call in reply.tool_calls or []:
            try:
                arguments = json.loads(call.function.arguments or "{}")
            except json.JSONDecodeError:
                arguments = {"_unparsed": call.function.arguments}
            calls.append(
                {
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": arguments},
                }
            )
        return assistant_message(*calls, content=reply.content or "")


def _to_openai(messages: list[Message]) -> list[dict[str, Any]]:
    """Chat-template messages to the OpenAI wire format (ids link calls to results)."""
    converted: list[dict[str, Any]] = []
    pending: list[str] = []
    for index, message in enumerate(messages):
        if message["role"] == "assistant" and message.get("tool_calls"):
            ids = [f"call_{index}_{i}" for i in range(len(message["tool_calls"]))]
            pending = list(ids)
            converted.append(
                {
                    "role": "assistant",
                    "content": message.get("content") or None,
                    "tool_calls": [
                        {
                            "id": call_id,
                            "type": "function",
                            "function": {
                                "name": call["function"]["name"],
                                "arguments": json.dumps(call["function"]["arguments"]),
                            },
                        }
                        for call_id, call in zip(
                            ids, message["tool_calls"], strict=True
                        )
                    ],
                }
            )
        elif message["role"] == "tool":
            call_id = pending.pop(0) if pending else f"call_{index}"
            converted.append(
                {"role": "tool", "tool_call_id": call_id, "content": message["content"]}
            )
        else:
            converted.append({"role": message["role"], "content": message["content"]})
    return converted
