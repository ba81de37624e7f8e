"""What the web page shows, as HTML and Markdown: pure functions of an observation.

Tables and schemas are drawn from the structure behind the agent's text
(``TableView``, ``Table``), never parsed back out of it; every value is escaped.
"""

import html

from sql_env.models import SQLObservation
from sql_env.server.formatting import TableView, foreign_key_target
from sql_env.server.question_bank import Table

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
