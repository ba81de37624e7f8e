"""Training and evaluation for SQLEnv: TRL GRPO, SFT warm start, baselines.

Modules (light ones first; ``models``, ``rendering``, ``llm_policy``, ``sft``,
``grpo`` and ``overfit`` import torch or TRL):

- ``environment``: ``SQLToolEnv``, the TRL ``environment_factory`` class (tools
  ``answer``/``describe``/``query``/``sample``, in TRL's order), in-process or
  over WebSocket.
- ``prompts``: the system prompt and the texts of questions and tool results.
- ``settings``: ``EpisodeSettings`` (dataset, schema, answer format, evidence),
  the reset settings of GRPO rows, SFT data and evaluation.
- ``rollout``: the episode runner, the ``random`` and ``oracle`` policies.
- ``data``: question selection (dataset, split, database subset, difficulty,
  curriculum by the dataset's levels), the server's task API, the data of
  ``SQLENV_SOURCE``.
- ``evaluation``: play, summarise and report; ``metrics``: accuracy, pass@k and
  majority@k with Wilson intervals; ``answer_groups``: which sampled answers are
  the same; ``plots``: PNG plots.
- ``recipes``: settings per device (CPU, T4, L4, A100, H100), TRL configs.
- ``models``: fp32 master weights; the tiny offline Qwen2 and Qwen3, SmolLM2.
- ``rendering``: a conversation as the token ids and loss mask GRPO builds.
- ``llm_policy``: chat-model policies (transformers or an OpenAI-compatible API).
- ``sft``: warm-start trajectories from gold SQL and TRL's SFTTrainer.
- ``grpo``: ``train_grpo``, TRL's GRPOTrainer with logging and a learning curve.
- ``overfit``: the check that the recipe learns a handful of questions.
- ``cli``: argparse for the light scripts' argument dataclasses.
"""
