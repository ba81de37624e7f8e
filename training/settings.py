"""How each episode is played: dataset, schema, answer format, evidence.

One value carries these settings from the command line to every place an
episode starts, the GRPO rows (TRL passes a row's columns to
``SQLToolEnv.reset``), the SFT data and the evaluation, so a model is trained
and evaluated in one setting. Their meaning is the environment's
(``SQLEnvironment.reset``), which states them to the agent in the reset
observation's ``instructions``; the prompt the model sees is built from that
observation (``prompts.question_text``), never from these values.
"""

from dataclasses import asdict, dataclass
from typing import Any

from sql_env.models import AnswerMode, SchemaMode
from sql_env.server.question_bank import DEFAULT_DATASET


@dataclass(frozen=True)
class EpisodeSettings:
    """The reset arguments that decide what an episode looks like.

    Attributes:
        dataset: A built dataset (``spider``, ``bird``, a custom name).
        schema: ``"hidden"`` (explore it) or ``"given"`` (CREATE TABLE
            statements in the first message).
        answer: ``"value"`` (the result rows) or ``"sql"`` (one SELECT, scored
            by the dataset's official execution rule).
        evidence: Show BIRD's evidence (a hint) with the question.
    """

    dataset: str = DEFAULT_DATASET
    schema: SchemaMode = "hidden"
    answer: AnswerMode = "value"
    evidence: bool = True

    def reset_kwargs(self) -> dict[str, Any]:
        """The settings as ``SQLEnvironment.reset`` arguments (every key, always).

        >>> EpisodeSettings(answer="sql").reset_kwargs()
        {'dataset': 'spider', 'schema': 'hidden', 'answer': 'sql', 'evidence': True}
        """
        return asdict(self)

    def label(self) -> str:
        """A short name for titles and tables.

        >>> EpisodeSettings("bird", "given", "sql", evidence=False).label()
        'bird, schema given, answer sql, no evidence'
        """
        text = f"{self.dataset}, schema {self.schema}, answer {self.answer}"
        return text if self.evidence else f"{text}, no evidence"
