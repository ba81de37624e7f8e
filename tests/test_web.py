"""The ``/web`` page: result parsing, and one episode played in headless Chromium.

The browser test needs Debian's ``chromium`` and ``chromium-driver`` (``make
setup-browser``) and the ``selenium`` package; it downloads nothing.
"""

import os
import shutil
from pathlib import Path

import pytest

from sql_env.models import SQLObservation
from sql_env.server import formatting
from sql_env.server.question_bank import load_bank
from sql_env.server.web_ui import parse_pipe_table, parse_schema, result_html
from tests.e2e.live_server import live_server

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1400,1500",
)
WAIT_S = 30


@pytest.mark.parametrize(
    ("columns", "rows", "kwargs"),
    [
        pytest.param(["n"], [(6,)], {}, id="one-row"),
        pytest.param(["a", "b"], [], {}, id="no-rows"),
        pytest.param(["x"], [(None,), (2.5,), ("a|b",)], {}, id="null-float-pipe"),
        pytest.param(["i"], [(i,) for i in range(30)], {}, id="showing-20-of-30"),
        pytest.param(["i"], [(1,)], {"more_rows": True}, id="more-than"),
        pytest.param(["id", "v"], [(1, "a")], {"total": 40}, id="sample-of-total"),
    ],
)
def test_parse_pipe_table_reads_render_table_back(
    columns: list[str], rows: list[tuple], kwargs: dict
) -> None:
    text = formatting.render_table(columns, rows, **kwargs)
    table = parse_pipe_table(text)
    assert table is not None
    assert table.columns == columns
    shown = [[formatting.cell_text(v) for v in row] for row in rows][: len(table.rows)]
    assert table.rows == shown
    assert table.footer == text.splitlines()[-1]


def test_parse_schema_reads_every_describe_of_the_tiny_bank_back(
    tiny_data_dir: Path,
) -> None:
    bank = load_bank(tiny_data_dir)
    for schema in bank.schemas.values():
        for table in schema.tables:
            parsed = parse_schema(formatting.render_schema(table))
            assert parsed is not None, table
            _, columns, foreign_keys = parsed
            assert [row[0] for row in columns.rows] == [c.name for c in table.columns]
            assert len(foreign_keys) == len(table.foreign_keys)


def test_result_html_escapes_cells_and_errors() -> None:
    observation = SQLObservation(
        result=formatting.render_table(["<b>"], [("<script>x</script>",)]),
        error="<img src=x>",
    )
    page = result_html(observation)
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;" in page and "<table>" in page


def test_result_html_shows_a_whole_describe_as_one_table(tiny_data_dir: Path) -> None:
    table = load_bank(tiny_data_dir).schema("shop").find("customer")
    page = result_html(SQLObservation(result=formatting.render_schema(table)))
    assert page.count("<tr>") == len(table.columns) + 1
    assert "- " not in page


def _chrome():
    """Headless Debian Chromium through its own chromedriver (no downloads)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "run `make setup-browser` (Debian chromium packages)"
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not fetch anything
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


@pytest.mark.slow
def test_web_page_plays_an_episode_to_a_correct_answer_in_chromium(
    tiny_data_dir: Path, tmp_path: Path
) -> None:
    from selenium.common.exceptions import (
        ElementClickInterceptedException,
        ElementNotInteractableException,
        NoSuchElementException,
        StaleElementReferenceException,
    )
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    question = next(
        q
        for q in load_bank(tiny_data_dir).eligible("dev")
        if q.gold_sql.lower().startswith("select count(*)")
    )
    settings = {"ENABLE_WEB_INTERFACE": "true"}
    with live_server(tiny_data_dir, tmp_path / "server.log", **settings) as url:
        browser = _chrome()
        try:
            wait = WebDriverWait(browser, WAIT_S)
            browser.get(f"{url}/web/")

            def clicked(locator: tuple[str, str]):
                """Click once nothing covers the element; return it, else False.

                Gradio lays a loading overlay over components while an event
                runs, and a click on it is intercepted: wait until the click
                itself lands, not for a time.
                """

                def attempt(b):
                    try:
                        element = b.find_element(*locator)
                        if not (element.is_displayed() and element.is_enabled()):
                            return False
                        element.click()
                    except (
                        ElementClickInterceptedException,
                        ElementNotInteractableException,
                        NoSuchElementException,
                        StaleElementReferenceException,
                    ):
                        return False
                    return element

                return wait.until(attempt)

            def field(elem_id: str):
                selector = f"#{elem_id} textarea, #{elem_id} input"
                return clicked((By.CSS_SELECTOR, selector))

            def click(elem_id: str) -> None:
                clicked((By.ID, elem_id))

            def shows(elem_id: str, text: str) -> None:
                wait.until(ec.text_to_be_present_in_element((By.ID, elem_id), text))

            field("sqlenv-db").click()  # its choices come from the task API

            def option_texts(b) -> list[str] | None:
                # .text is "" until the dropdown has drawn an option: wait for it.
                options = b.find_elements(By.CSS_SELECTOR, "[role=option]")
                texts = [o.text.strip() for o in options]
                return texts if texts and all(texts) else None

            options = wait.until(option_texts)
            click("sqlenv-question")  # closes the dropdown
            field("sqlenv-qid").send_keys(question.id)
            click("sqlenv-reset")
            shows("sqlenv-question", question.question)
            assert question.gold_sql not in browser.page_source
            click("sqlenv-describe")
            shows("sqlenv-result", "column")
            click("sqlenv-sample")
            shows("sqlenv-status", "Step 2")
            field("sqlenv-sql").send_keys(question.gold_sql)
            click("sqlenv-query")
            shows("sqlenv-status", "Step 3")
            cells = browser.find_elements(By.CSS_SELECTOR, "#sqlenv-result td")
            value = cells[0].text
            field("sqlenv-answer-text").send_keys(value)
            click("sqlenv-answer")
            shows("sqlenv-result", "Correct answer")
            shows("sqlenv-status", "reward 1")
            screenshot = tmp_path / "web_episode.png"
            assert browser.save_screenshot(str(screenshot))
            page = browser.page_source
        finally:
            browser.quit()
    assert "shop" in options
    assert value == str(question.gold_rows[0][0])
    assert "ended: answered" in page
    assert screenshot.stat().st_size > 10_000
