"""The playable page at ``/web``: pick a question, explore the database, answer.

``build_web_ui`` is the ``gradio_builder`` OpenEnv's ``create_app`` calls when
``ENABLE_WEB_INTERFACE=true``; its page is the whole of ``/web`` (OpenEnv's generic
Playground, which shares one environment between all visitors, is not mounted, and
``remove_shared_web_routes`` drops its routes). Each browser session plays on its own
environment, opened on its first episode against the same session slots as WebSocket
clients (``MAX_CONCURRENT_ENVS``) and closed when the session ends or idles out. The
handlers are coroutines that await the environment's SQL workers, so a slow visitor
holds up no one. The page only reads what an agent reads, plus the structure behind
a result (``SQLEnvironment.last_view``): observations, the public state and the task
list; gold SQL and gold rows never reach it.
"""

import html
from collections.abc import Callable
from typing import Any

import gradio as gr
from fastapi import FastAPI

from sql_env.models import (
    ANSWER_MODES,
    SCHEMA_MODES,
    ActionType,
    AnswerMode,
    SchemaMode,
    SQLAction,
    SQLObservation,
)
from sql_env.models import RewardMode as RewardModeType
from sql_env.server.formatting import TableView, foreign_key_target
from sql_env.server.question_bank import BankFormatError, Table
from sql_env.server.rewards import REWARD_MODES
from sql_env.server.session_guard import SessionSlots
from sql_env.server.sql_environment import SQLEnvironment

ANY_DATABASE = "(any database)"
# Routes of OpenEnv's generic web interface that drive one environment shared by
# every visitor (and a /ws/ui broadcast that one slow reader stalls for all).
SHARED_WEB_ROUTES = frozenset({"/web/reset", "/web/step", "/web/state", "/ws/ui"})
# Each visitor's events run as coroutines on the server's event loop and wait on
# their own environment only; "once" drops a click while that button's event runs.
EVENTS = dict(concurrency_limit=None, trigger_mode="once")

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


def table_html(
    columns: tuple[str, ...], rows: tuple[tuple[str, ...], ...], note: str = ""
) -> str:
    """An HTML table with every cell escaped, and an optional note under it."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
        for row in rows
    )
    below = f'<p class="sqlenv-note">{html.escape(note)}</p>' if note else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{below}"


def view_html(view: TableView | Table | None) -> str:
    """A result table or a schema, from the structure behind the agent's text."""
    if isinstance(view, TableView):
        return table_html(view.columns, view.rows, f"({view.count_text()})")
    if isinstance(view, Table):
        primary = set(view.primary_key)
        rows = tuple(
            (c.name, c.type or "ANY", "primary key" if c.name in primary else "")
            for c in view.columns
        )
        parts = [
            f"<p><b>Table {html.escape(view.name)} ({view.row_count:,} rows)</b></p>",
            table_html(("column", "type", "key"), rows),
        ]
        if view.foreign_keys:
            items = "".join(
                f"<li>{html.escape(f'{fk.column} -> {foreign_key_target(fk)}')}</li>"
                for fk in view.foreign_keys
            )
            parts.append(f"<p>Foreign keys:</p><ul>{items}</ul>")
        return "".join(parts)
    return ""


def result_html(
    observation: SQLObservation, view: TableView | Table | None = None
) -> str:
    """The last action's outcome: an error, a table, a schema, or the verdict."""
    parts: list[str] = []
    if observation.error:
        error = html.escape(observation.error)
        parts.append(f'<div class="sqlenv-error">{error}</div>')
    if view is not None:
        parts.append(view_html(view))
        if observation.truncated:
            parts.append(
                '<p class="sqlenv-note">Step budget exhausted: the episode is over.</p>'
            )
    elif observation.result:
        parts.append(f"<pre>{html.escape(observation.result)}</pre>")
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
    """The question, its evidence, where it lives, and the schema when given."""
    tables = ", ".join(f"`{t}`" for t in observation.tables)
    parts = [f"### {observation.question}"]
    if observation.evidence:
        parts.append(f"**Evidence:** {observation.evidence}")
    parts.append(
        f"Question `{observation.question_id}` on database `{observation.db_id}`. "
        f"Tables: {tables}"
    )
    if observation.db_schema:
        parts.append(f"```sql\n{observation.db_schema}\n```")
    return "\n\n".join(parts)


def playable_splits(env_factory: Callable[[], SQLEnvironment]) -> list[str]:
    """``dataset/split`` names with questions, dev splits first (the showcase)."""
    try:
        env = env_factory()
    except (OSError, BankFormatError):  # no data yet: /health says so
        return []
    try:
        splits = env.list_splits()
    finally:
        env.close()
    return sorted(splits, key=lambda name: (not name.endswith("/dev"), name))


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


def step_html(
    title: str,
    observation: SQLObservation,
    view: TableView | Table | None = None,
) -> str:
    """One entry of the episode transcript: what was done, then its outcome."""
    return (
        f'<div class="sqlenv-step"><p class="sqlenv-title">{html.escape(title)}</p>'
        f"{result_html(observation, view)}</div>"
    )


def transcript_html(entries: list[str]) -> str:
    """The episode so far, newest step first."""
    if not entries:
        return result_html(SQLObservation())
    return "".join(reversed(entries))


def remove_shared_web_routes(app: FastAPI) -> None:
    """Drop the routes of OpenEnv's web interface that share one environment."""
    app.router.routes[:] = [
        route
        for route in app.router.routes
        if getattr(route, "path", None) not in SHARED_WEB_ROUTES
    ]


class Visitor:
    """One browser session's environment and the session slot it holds."""

    def __init__(self, env: SQLEnvironment, slots: SessionSlots) -> None:
        self.env = env
        self._slots: SessionSlots | None = slots

    @classmethod
    def open(
        cls, env_factory: Callable[[], SQLEnvironment], slots: SessionSlots
    ) -> "Visitor | None":
        """A new visitor's environment, or None when every slot is taken."""
        if not slots.try_acquire():
            return None
        try:
            return cls(env_factory(), slots)
        except BaseException:
            slots.release()
            raise

    @property
    def closed(self) -> bool:
        return self._slots is None

    def close(self) -> None:
        """Close the environment and free the slot; safe twice."""
        self.env.close()
        if self._slots is not None:
            self._slots.release()
            self._slots = None


def _close_visitor(visitor: Visitor | None) -> None:
    if visitor is not None:
        visitor.close()


def build_web_ui(
    web_manager: Any,
    action_fields: list[dict[str, Any]],
    metadata: Any,
    is_chat_env: bool,
    title: str,
    quick_start_md: str,
    *,
    env_factory: Callable[[], SQLEnvironment],
    slots: SessionSlots,
    idle_timeout_s: float | None,
) -> gr.Blocks:
    """The page (OpenEnv's ``gradio_builder`` signature, plus what the page needs).

    Args:
        web_manager: OpenEnv's shared web manager (unused: each visitor gets an env).
        action_fields: The action's form fields, as OpenEnv extracts them (unused).
        metadata: The environment's metadata (unused).
        is_chat_env: Whether the env takes chat messages (it does not).
        title: The page title.
        quick_start_md: OpenEnv's client snippet (unused: the README has ours).
        env_factory: Makes one environment; called once per browser session.
        slots: The session slots shared with WebSocket clients.
        idle_timeout_s: A visitor idle this long loses the environment and slot.

    Returns:
        The page's Blocks.
    """

    def database_choices(split: str) -> gr.Dropdown:
        env = env_factory()
        try:
            databases = sorted({task["db_id"] for task in env.list_tasks(split)})
        finally:
            env.close()
        return gr.Dropdown(choices=[ANY_DATABASE, *databases], value=ANY_DATABASE)

    def show(
        visitor: Visitor,
        entries: list[str],
        observation: SQLObservation,
        new_episode: bool = False,
    ) -> tuple[Any, ...]:
        tables = observation.tables
        return (
            visitor,
            entries,
            question_markdown(observation),
            gr.Dropdown(choices=tables, value=tables[0] if tables else None)
            if new_episode
            else gr.skip(),
            transcript_html(entries),
            status_markdown(observation, visitor.env.state.total_reward),
            history_html(observation),
        )

    def failed(
        visitor: Visitor | None, entries: list[str], message: str
    ) -> tuple[Any, ...]:
        entries = [*entries, step_html("Not done", SQLObservation(error=message))]
        skip = gr.skip()
        return (visitor, entries, skip, skip, transcript_html(entries), skip, skip)

    # Visitors by browser session, so a closed tab frees its slot at once
    # (``unload``); one that just stops clicking frees it when its state expires.
    present: dict[str, Visitor] = {}

    def leave(request: gr.Request) -> None:
        _close_visitor(present.pop(request.session_hash or "", None))

    async def reset(
        visitor: Visitor | None,
        entries: list[str],
        split: str,
        database: str,
        question_id: str,
        seed: str,
        reward_mode: RewardModeType,
        schema_mode: SchemaMode,
        answer_mode: AnswerMode,
        request: gr.Request,
    ) -> tuple[Any, ...]:
        if visitor is None:
            visitor = Visitor.open(env_factory, slots)
            if visitor is None:
                return failed(
                    None,
                    entries,
                    f"The server is at capacity ({slots.capacity} sessions in "
                    "play); try again in a minute.",
                )
            for key in [k for k, v in present.items() if v.closed]:
                del present[key]  # expired with their state
            if request.session_hash:
                present[request.session_hash] = visitor
        dataset, _, split_name = (split or "").rpartition("/")
        kwargs: dict[str, Any] = {
            "split": split_name,
            "reward_mode": reward_mode,
            "schema": schema_mode,
            "answer": answer_mode,
        }
        if dataset:
            kwargs["dataset"] = dataset
        if question_id.strip():
            kwargs["question_id"] = question_id.strip()
        if database and database != ANY_DATABASE:
            kwargs["db_id"] = database
        try:
            if seed.strip():
                kwargs["seed"] = int(seed)
            observation = await visitor.env.reset_async(**kwargs)
        except ValueError as exc:
            return failed(visitor, entries, str(exc))
        entries = [
            step_html(f"New episode: {observation.question_id}", observation, None)
        ]
        return show(visitor, entries, observation, new_episode=True)

    def act(action_type: ActionType) -> Callable[..., Any]:
        async def run(
            visitor: Visitor | None, entries: list[str], argument: str
        ) -> tuple[Any, ...]:
            if visitor is None:
                return failed(visitor, entries, "Start an episode first (New episode).")
            argument = argument or ""
            observation = await visitor.env.step_async(
                SQLAction(action_type=action_type, argument=argument)
            )
            shown = " ".join(argument[:1000].split())
            shown = shown if len(shown) <= 200 else shown[:199] + "…"
            title = f"Step {observation.step_count}: {action_type} {shown}"
            entry = step_html(title, observation, visitor.env.last_view)
            return show(visitor, [*entries, entry], observation)

        return run

    with gr.Blocks(title=title) as blocks:
        env_state = gr.State(
            None, time_to_live=idle_timeout_s, delete_callback=_close_visitor
        )
        entries_state = gr.State([])
        gr.Markdown(
            "## SQLEnv: answer a question about a real database\n"
            "Start an episode, look at tables (DESCRIBE, SAMPLE), run read-only "
            "SQL (QUERY), then ANSWER. The reward comes with the answer."
        )
        with gr.Row(equal_height=True):
            splits = playable_splits(env_factory)
            split = gr.Dropdown(
                splits,
                value=splits[0] if splits else None,
                label="Dataset / split",
                elem_id="sqlenv-split",
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
            schema_mode = gr.Dropdown(
                list(SCHEMA_MODES),
                value=SCHEMA_MODES[0],
                label="Schema",
                elem_id="sqlenv-schema-mode",
            )
            answer_mode = gr.Dropdown(
                list(ANSWER_MODES),
                value=ANSWER_MODES[0],
                label="Answer by",
                elem_id="sqlenv-answer-mode",
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
                        label="Answer (values as JSON or one per line; or SQL)",
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
        blocks.unload(leave)
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
                schema_mode,
                answer_mode,
            ],
            outputs=shown,
            api_name="new_episode",
            **EVENTS,
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
                api_name=action_type.lower(),
                **EVENTS,
            )
    return blocks
