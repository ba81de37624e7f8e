"""The playable page at ``/web``: pick a question, explore the database, answer.

``build_web_ui`` is the ``gradio_builder`` OpenEnv's ``create_app`` calls when
``ENABLE_WEB_INTERFACE=true``; its page is the "Play" tab, next to OpenEnv's generic
Playground. Each browser session plays on its own environment (made by ``env_factory``
on the first reset and closed when the session ends), so visitors never share an
episode. The page only reads what an agent reads: observations, the public state and
the task list; gold SQL and gold rows never reach it.

Results arrive as the text an agent reads (``server/formatting.py``: pipe tables,
schema lists); ``parse_pipe_table`` and ``parse_schema`` turn them back into tables.
"""

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from sql_env.models import ActionType, SQLAction, SQLObservation
from sql_env.server.sql_environment import SQLEnvironment

ANY_DATABASE = "(any database)"
SPLITS = ("dev", "train")
REWARD_MODES = ("binary", "shaped")
SESSION_TTL_S = 3600
# Visitors each have their own environment, so their calls may run side by side.
CONCURRENCY = dict(concurrency_id="sqlenv", concurrency_limit=16, trigger_mode="once")

_FOOTER = re.compile(r"^\((?:showing \d[\d,]* of .+ rows|[\d,]+ rows?)\)$")
_TABLE_HEADER = re.compile(r"^Table (?P<name>.+) \((?P<rows>[\d,]+) rows?\)$")
_PRIMARY_KEY = ", primary key"

CSS = """
.sqlenv-box { font-size: 14px; }
.sqlenv-box table { border-collapse: collapse; margin: 6px 0; }
.sqlenv-box th, .sqlenv-box td { border: 1px solid #d0d7de; padding: 4px 10px;
  text-align: left; }
.sqlenv-box th { background: #f3f4f6; }
.sqlenv-box .sqlenv-note { color: #57606a; margin: 4px 0; }
.sqlenv-box .sqlenv-error { color: #b42318; background: #fef3f2;
  border: 1px solid #fda29b; padding: 6px 10px; border-radius: 6px; }
.sqlenv-box .sqlenv-ok { color: #067647; font-weight: 600; }
.sqlenv-box .sqlenv-bad { color: #b42318; font-weight: 600; }
.sqlenv-box pre { white-space: pre-wrap; }
.sqlenv-step { border-top: 1px solid #e5e7eb; padding: 6px 0; }
.sqlenv-title { font-weight: 600; font-family: monospace; margin: 2px 0; }
"""


@dataclass(frozen=True)
class PipeTable:
    """A result table read back from its text form."""

    columns: list[str]
    rows: list[list[str]]
    footer: str


def parse_pipe_table(text: str) -> PipeTable | None:
    """Read ``render_table``'s text back into columns, rows and the row-count line.

    Cells never contain ``|`` (the formatter replaces it), so splitting is exact.

    >>> parse_pipe_table("name | age\\nJoe | 52\\n(1 row)")
    PipeTable(columns=['name', 'age'], rows=[['Joe', '52']], footer='(1 row)')
    >>> parse_pipe_table("no table here") is None
    True
    """
    lines = text.strip("\n").split("\n")
    if len(lines) < 2 or not _FOOTER.match(lines[-1]):
        return None
    columns = lines[0].split(" | ")
    rows = [line.split(" | ") for line in lines[1:-1]]
    if any(len(row) != len(columns) for row in rows):
        return None
    return PipeTable(columns=columns, rows=rows, footer=lines[-1])


def parse_schema(text: str) -> tuple[str, PipeTable, list[str]] | None:
    """Read DESCRIBE's text into a title, a table of columns and the foreign keys.

    >>> title, table, fks = parse_schema(
    ...     "Table singer (6 rows)\\nColumns:\\n- id INT, primary key\\n- name TEXT"
    ... )
    >>> title, table.rows, fks
    ('singer (6 rows)', [['id', 'INT', 'primary key'], ['name', 'TEXT', '']], [])
    """
    lines = text.strip("\n").split("\n")
    header = _TABLE_HEADER.match(lines[0]) if lines else None
    if header is None or len(lines) < 2 or lines[1] != "Columns:":
        return None
    rows: list[list[str]] = []
    foreign_keys: list[str] = []
    section = "columns"
    for line in lines[2:]:
        if line == "Foreign keys:":
            section = "fks"
        elif section == "fks" and line.startswith("- "):
            foreign_keys.append(line[2:])
        elif section == "columns" and line.startswith("- "):
            rows.append(_column_row(line[2:]))
        else:
            return None
    title = f"{header['name']} ({header['rows']} rows)"
    return title, PipeTable(["column", "type", "key"], rows, ""), foreign_keys


def _column_row(text: str) -> list[str]:
    """``name TYPE[, primary key]`` as [name, type, key]; names may hold spaces.

    >>> _column_row("Home Town TEXT"), _column_row("price decimal(10, 2), primary key")
    (['Home Town', 'TEXT', ''], ['price', 'decimal(10, 2)', 'primary key'])
    """
    key = "primary key" if text.endswith(_PRIMARY_KEY) else ""
    text = text.removesuffix(_PRIMARY_KEY)
    # The type is the last word, or the words from the last "(" when it has one.
    split_at = text.rfind(" ", 0, text.rfind("(")) if text.endswith(")") else -1
    if split_at == -1:
        split_at = text.rfind(" ")
    if split_at == -1:
        return [text, "", key]
    return [text[:split_at], text[split_at + 1 :], key]


def table_html(table: PipeTable) -> str:
    """An HTML table with every cell escaped."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
        for row in table.rows
    )
    footer = html.escape(table.footer)
    note = f'<p class="sqlenv-note">{footer}</p>' if footer else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"


def result_html(observation: SQLObservation) -> str:
    """The last action's outcome: an error, a table, a schema, or the verdict."""
    parts: list[str] = []
    if observation.error:
        error = html.escape(observation.error)
        parts.append(f'<div class="sqlenv-error">{error}</div>')
    text, note = observation.result, ""
    readable = parse_pipe_table(text) or parse_schema(text)
    if text and readable is None and "\n" in text:
        # A closing remark after a table ("Step budget exhausted ...").
        head, last = text.rsplit("\n", 1)
        if parse_pipe_table(head) is not None or parse_schema(head) is not None:
            text, note = head, last
    if text:
        table = parse_pipe_table(text)
        schema = parse_schema(text) if table is None else None
        if table is not None:
            parts.append(table_html(table))
        elif schema is not None:
            title, columns, foreign_keys = schema
            parts.append(f"<p><b>Table {html.escape(title)}</b></p>")
            parts.append(table_html(columns))
            if foreign_keys:
                items = "".join(f"<li>{html.escape(fk)}</li>" for fk in foreign_keys)
                parts.append(f"<p>Foreign keys:</p><ul>{items}</ul>")
        else:
            parts.append(f"<pre>{html.escape(text)}</pre>")
    if note:
        parts.append(f'<p class="sqlenv-note">{html.escape(note)}</p>')
    if observation.answer_correct is not None:
        verdict = (
            '<span class="sqlenv-ok">Correct answer</span>'
            if observation.answer_correct
            else '<span class="sqlenv-bad">Wrong answer</span>'
        )
        reward = (
            "" if observation.reward is None else f" · reward {observation.reward:g}"
        )
        parts.append(f"<p>{verdict}{reward}</p>")
    if not parts:
        parts.append('<p class="sqlenv-note">Nothing yet: take an action.</p>')
    return f'<div class="sqlenv-box">{"".join(parts)}</div>'


def question_markdown(observation: SQLObservation) -> str:
    """The question and where it lives."""
    tables = ", ".join(f"`{t}`" for t in observation.tables)
    return (
        f"### {observation.question}\n\n"
        f"Question `{observation.question_id}` on database `{observation.db_id}`. "
        f"Tables: {tables}"
    )


def status_markdown(observation: SQLObservation, total_reward: float) -> str:
    """Steps, budget, reward and whether the episode is over."""
    reward = "–" if observation.reward is None else f"{observation.reward:g}"
    if observation.truncated:
        ended = "ended: step budget used up"
    elif observation.done:
        ended = "ended: answered"
    else:
        ended = "running"
    return (
        f"**Step** {observation.step_count} · **budget left** "
        f"{observation.budget_remaining} · **reward** {reward} · "
        f"**total reward** {total_reward:g} · **episode** {ended}"
    )


def history_html(observation: SQLObservation) -> str:
    """One line per action so far (what the agent sees in ``history``)."""
    if not observation.history:
        return '<p class="sqlenv-note">No actions yet.</p>'
    items = "".join(
        f"<li><code>{html.escape(line)}</code></li>" for line in observation.history
    )
    return f'<ol class="sqlenv-box">{items}</ol>'


def step_html(title: str, observation: SQLObservation) -> str:
    """One entry of the episode transcript: what was done, then its outcome."""
    return (
        f'<div class="sqlenv-step"><p class="sqlenv-title">{html.escape(title)}</p>'
        f"{result_html(observation)}</div>"
    )


def transcript_html(entries: list[str]) -> str:
    """The episode so far, newest step first."""
    if not entries:
        return result_html(SQLObservation())
    return "".join(reversed(entries))


def _close_env(env: SQLEnvironment | None) -> None:
    if env is not None:
        env.close()


def build_web_ui(
    web_manager: Any,
    action_fields: list[dict[str, Any]],
    metadata: Any,
    is_chat_env: bool,
    title: str,
    quick_start_md: str,
    *,
    env_factory: Callable[[], SQLEnvironment],
) -> gr.Blocks:
    """The "Play" tab (OpenEnv's ``gradio_builder`` signature, plus the env factory).

    Args:
        web_manager: OpenEnv's shared web manager (unused: each visitor gets an env).
        action_fields: The action's form fields, as OpenEnv extracts them (unused).
        metadata: The environment's metadata (unused).
        is_chat_env: Whether the env takes chat messages (it does not).
        title: The page title.
        quick_start_md: OpenEnv's client snippet (unused: the README has ours).
        env_factory: Makes one environment; called once per browser session.

    Returns:
        The tab's Blocks.
    """

    def database_choices(split: str) -> gr.Dropdown:
        env = env_factory()
        try:
            databases = sorted({task["db_id"] for task in env.list_tasks(split)})
        finally:
            env.close()
        return gr.Dropdown(choices=[ANY_DATABASE, *databases], value=ANY_DATABASE)

    def show(
        env: SQLEnvironment,
        entries: list[str],
        observation: SQLObservation,
        new_episode: bool = False,
    ) -> tuple[Any, ...]:
        tables = observation.tables
        return (
            env,
            entries,
            question_markdown(observation),
            gr.Dropdown(choices=tables, value=tables[0] if tables else None)
            if new_episode
            else gr.skip(),
            transcript_html(entries),
            status_markdown(observation, env.state.total_reward),
            history_html(observation),
        )

    def failed(
        env: SQLEnvironment | None, entries: list[str], message: str
    ) -> tuple[Any, ...]:
        entries = [*entries, step_html("Not done", SQLObservation(error=message))]
        skip = gr.skip()
        return (env, entries, skip, skip, transcript_html(entries), skip, skip)

    def reset(
        env: SQLEnvironment | None,
        entries: list[str],
        split: str,
        database: str,
        question_id: str,
        seed: str,
        reward_mode: str,
    ) -> tuple[Any, ...]:
        env = env or env_factory()
        kwargs: dict[str, Any] = {"split": split, "reward_mode": reward_mode}
        if question_id.strip():
            kwargs["question_id"] = question_id.strip()
        if database and database != ANY_DATABASE:
            kwargs["db_id"] = database
        try:
            if seed.strip():
                kwargs["seed"] = int(seed)
            observation = env.reset(**kwargs)
        except ValueError as exc:
            return failed(env, entries, str(exc))
        entries = [step_html(f"New episode: {observation.question_id}", observation)]
        return show(env, entries, observation, new_episode=True)

    def act(action_type: ActionType) -> Callable[..., tuple[Any, ...]]:
        def run(
            env: SQLEnvironment | None, entries: list[str], argument: str
        ) -> tuple[Any, ...]:
            if env is None:
                return failed(env, entries, "Start an episode first (New episode).")
            argument = argument or ""
            observation = env.step(
                SQLAction(action_type=action_type, argument=argument)
            )
            shown = " ".join(argument.split())
            shown = shown if len(shown) <= 200 else shown[:199] + "…"
            title = f"Step {observation.step_count}: {action_type} {shown}"
            return show(env, [*entries, step_html(title, observation)], observation)

        return run

    with gr.Blocks(title=title) as blocks:
        env_state = gr.State(
            None, time_to_live=SESSION_TTL_S, delete_callback=_close_env
        )
        entries_state = gr.State([])
        gr.Markdown(
            "## SQLEnv: answer a question about a real database\n"
            "Start an episode, look at tables (DESCRIBE, SAMPLE), run read-only "
            "SQL (QUERY), then ANSWER. The reward comes with the answer."
        )
        with gr.Row(equal_height=True):
            split = gr.Dropdown(
                list(SPLITS), value=SPLITS[0], label="Split", elem_id="sqlenv-split"
            )
            database = gr.Dropdown(
                [ANY_DATABASE],
                value=ANY_DATABASE,
                label="Database",
                elem_id="sqlenv-db",
            )
            question_id = gr.Textbox(
                label="Question id (optional)",
                placeholder="spider/dev/0",
                elem_id="sqlenv-qid",
            )
            seed = gr.Textbox(
                label="Seed (optional)", placeholder="e.g. 7", elem_id="sqlenv-seed"
            )
            reward_mode = gr.Dropdown(
                list(REWARD_MODES),
                value=REWARD_MODES[0],
                label="Reward mode",
                elem_id="sqlenv-reward-mode",
            )
            reset_button = gr.Button(
                "New episode", variant="primary", elem_id="sqlenv-reset"
            )
        question = gr.Markdown(
            "_Press **New episode** to get a question._", elem_id="sqlenv-question"
        )
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Row(equal_height=True):
                    table = gr.Dropdown([], label="Table", elem_id="sqlenv-table")
                    describe_button = gr.Button(
                        "DESCRIBE", size="md", elem_id="sqlenv-describe"
                    )
                    sample_button = gr.Button(
                        "SAMPLE", size="md", elem_id="sqlenv-sample"
                    )
                with gr.Row(equal_height=True):
                    sql = gr.Textbox(
                        label="SQL (one read-only statement)",
                        lines=2,
                        scale=3,
                        placeholder="SELECT * FROM <table> LIMIT 5",
                        elem_id="sqlenv-sql",
                    )
                    query_button = gr.Button("QUERY", elem_id="sqlenv-query")
                with gr.Row(equal_height=True):
                    answer = gr.Textbox(
                        label="Answer (JSON, or one value per line)",
                        scale=3,
                        elem_id="sqlenv-answer-text",
                    )
                    answer_button = gr.Button(
                        "ANSWER", variant="primary", elem_id="sqlenv-answer"
                    )
            with gr.Column(scale=2):
                status = gr.Markdown("", elem_id="sqlenv-status")
                gr.Markdown("**History**")
                history = gr.HTML(
                    history_html(SQLObservation()), elem_id="sqlenv-history"
                )
        result = gr.HTML(transcript_html([]), css_template=CSS, elem_id="sqlenv-result")

        shown = [env_state, entries_state, question, table, result, status, history]
        blocks.load(database_choices, inputs=split, outputs=database)
        split.change(database_choices, inputs=split, outputs=database)
        reset_button.click(
            reset,
            inputs=[
                env_state,
                entries_state,
                split,
                database,
                question_id,
                seed,
                reward_mode,
            ],
            outputs=shown,
            **CONCURRENCY,
        )
        for button, action_type, argument in (
            (describe_button, "DESCRIBE", table),
            (sample_button, "SAMPLE", table),
            (query_button, "QUERY", sql),
            (answer_button, "ANSWER", answer),
        ):
            button.click(
                act(action_type),
                inputs=[env_state, entries_state, argument],
                outputs=shown,
                **CONCURRENCY,
            )
    return blocks
