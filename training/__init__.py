"""Training and evaluation for SQLEnv: TRL GRPO, SFT warm start, baselines.

Modules (light ones first; only ``models``, ``llm_policy``, ``sft`` and ``grpo``
import torch):

- ``environment``: ``SQLToolEnv``, the TRL ``environment_factory`` class (tools
  ``describe``/``sample``/``query``/``answer``), in-process or over WebSocket.
- ``prompts``: the system prompt and the texts of questions and tool results.
- ``rollout``: the episode runner and the ``random`` and ``oracle`` policies.
- ``data``: question selection (split, database subset, difficulty, curriculum).
- ``evaluation`` and ``plots``: summaries with Wilson intervals, PNG plots.
- ``models``: the tiny offline Qwen2 model and SmolLM2 from its GGUF wheel.
- ``llm_policy``: chat-model policies (transformers or an OpenAI-compatible API).
- ``sft``: warm-start trajectories from gold SQL and TRL's SFTTrainer.
- ``grpo``: ``train_grpo``, TRL's GRPOTrainer with logging and a learning curve.
- ``cli``: argparse for the light scripts' argument dataclasses.
"""
