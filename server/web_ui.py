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
from sql_env.server.question_bank import BankFormatError
from sql_env.server.rewards import REWARD_MODES
from sql_env.server.session_guard import SessionSlots
from sql_env.server.sql_environment import SQLEnvironment
from sql_env.server.web_render import (
    CSS,
    history_html,
    question_markdown,
    status_markdown,
    step_html,
    transcript_html,
)

ANY_DATABASE = "(any database)"
# Routes of OpenEnv's generic web interface that drive one environment shared by
# every visitor (and a /ws/ui broadcast that one slow reader stalls for all).
SHARED_WEB_ROUTES = frozenset({"/web/reset", "/web/step", "/web/state", "/ws/ui"})
# Each visitor's events run as coroutines on the server's event loop and wait on
# their own environment only; "once" drops a click while that button's event runs.
EVENTS = dict(concurrency_limit=None, trigger_mode="once")


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
