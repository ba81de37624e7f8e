"""The ``/web`` page: result parsing, and one episode played in headless Chromium.

The browser test needs Debian's ``chromium`` and ``chromium-driver`` (``make
setup-browser``) and the ``selenium`` package; it downloads nothing.
"""

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from sql_env.benchmarks.isolation import like_bomb
from sql_env.benchmarks.server_process import sqlenv_server
from sql_env.models import SQLObservation
from sql_env.server import formatting
from sql_env.server.question_bank import load_bank
from sql_env.server.web_render import result_html, view_html

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
        pytest.param(["id", "v"], [(1, "a")], {"row_count": 40}, id="sample-of-total"),
    ],
)
def test_the_page_shows_the_cells_and_count_the_agent_reads(
    columns: list[str], rows: list[tuple], kwargs: dict
) -> None:
    view = formatting.table_view(columns, rows, **kwargs)
    page = view_html(view)
    text_lines = formatting.render_table(view).splitlines()
    assert page.count("<tr>") == len(text_lines) - 1  # header + rows, no count line
    assert page.count("<th>") == len(columns)
    assert f"({view.count_text()})" == text_lines[-1]
    assert view.count_text() in page


def test_every_describe_of_the_tiny_bank_is_one_table(tiny_data_dir: Path) -> None:
    bank = load_bank(tiny_data_dir)
    for schema in bank.schemas.values():
        for table in schema.tables:
            page = view_html(table)
            assert page.count("<tr>") == len(table.columns) + 1, table.name
            assert page.count("<li>") == len(table.foreign_keys), table.name
            assert "- " not in page


def test_result_html_escapes_cells_and_errors() -> None:
    view = formatting.table_view(["<b>"], [("<script>x</script>",)])
    observation = SQLObservation(
        result=formatting.render_table(view), error="<img src=x>"
    )
    page = result_html(observation, view)
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;" in page and "<table>" in page


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
    with sqlenv_server(
        tiny_data_dir, log_path=tmp_path / "server.log", **settings
    ) as server:
        url = server.base_url
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


# ------------------------------------------------- visitors, through the server

LIKE_BOMB = like_bomb()  # 400 LIKE calls in one row: only a kill stops it


@pytest.fixture(scope="module")
def web_server(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    settings = {
        "ENABLE_WEB_INTERFACE": "true",
        "MAX_CONCURRENT_ENVS": "2",
        "SQLENV_QUERY_TIMEOUT_S": "1",
    }
    log = tmp_path_factory.mktemp("web") / "server.log"
    with sqlenv_server(tiny_data_dir, log_path=log, **settings) as server:
        yield server.base_url


def visitor(url: str):
    from gradio_client import Client

    return Client(f"{url}/web/", verbose=False, analytics_enabled=False)


def new_episode(client, question_id: str) -> tuple:
    return client.predict(
        "spider/dev",
        "(any database)",
        question_id,
        "",
        "binary",
        "hidden",
        "value",
        api_name="/new_episode",
    )


@pytest.mark.slow
def test_the_shared_environment_routes_are_not_served(web_server: str) -> None:
    import requests
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    for method, path in (("post", "/web/step"), ("post", "/web/reset")):
        response = getattr(requests, method)(f"{web_server}{path}", json={}, timeout=30)
        assert response.status_code in (404, 405), (path, response.status_code)
    state = requests.get(f"{web_server}/web/state", timeout=30)
    assert "episode_id" not in state.text
    with pytest.raises(InvalidStatus):
        connect(web_server.replace("http", "ws") + "/ws/ui", open_timeout=30)


@pytest.mark.slow
def test_each_visitor_plays_their_own_episode(
    web_server: str, tiny_data_dir: Path
) -> None:
    ann, bob = visitor(web_server), visitor(web_server)
    try:
        first = new_episode(ann, "spider/dev/0")
        second = new_episode(bob, "spider/dev/1")
        assert "How many customers" in first[0]
        assert "France" in second[0]
        outcome = ann.predict("6", api_name="/answer")
        assert "Correct answer" in outcome[2] and "**reward** 1" in outcome[3]
        untouched = bob.predict("customer", api_name="/describe")
        assert "**Step** 1" in untouched[3] and "Correct" not in untouched[2]
    finally:
        ann.close()
        bob.close()


def ws_reply(url: str) -> dict:
    """The first frame a new /ws socket receives after a reset."""
    from websockets.sync.client import connect

    with connect(url.replace("http", "ws") + "/ws", open_timeout=30) as ws:
        try:
            ws.send(json.dumps({"type": "reset", "data": {"split": "dev"}}))
        except Exception:  # noqa: BLE001 - a refused socket may close first
            pass
        return json.loads(ws.recv(timeout=30))


@pytest.mark.slow
def test_visitors_take_session_slots_and_a_slow_one_holds_up_no_one(
    tiny_data_dir: Path, tmp_path: Path
) -> None:
    settings = {
        "ENABLE_WEB_INTERFACE": "true",
        "MAX_CONCURRENT_ENVS": "2",
        "SQLENV_QUERY_TIMEOUT_S": "1",
        "SESSION_TIMEOUT_S": "3",
    }
    with sqlenv_server(
        tiny_data_dir, log_path=tmp_path / "server.log", **settings
    ) as server:
        play_two_visitors_on_two_slots(server.base_url)


def play_two_visitors_on_two_slots(web_server: str) -> None:
    slow, quick = visitor(web_server), visitor(web_server)
    try:
        new_episode(slow, "spider/dev/0")
        new_episode(quick, "spider/dev/0")
        # Both slots are taken by visitors: a WebSocket client is refused.
        refusal = ws_reply(web_server)
        assert refusal["data"]["code"] == "CAPACITY_REACHED", refusal
        late = visitor(web_server)
        try:
            assert "at capacity" in new_episode(late, "spider/dev/0")[2]
        finally:
            late.close()
        pending = slow.submit(LIKE_BOMB, api_name="/query")
        outcome = quick.predict("customer", api_name="/describe")
        assert "Table customer" in outcome[2]
        assert not pending.done()  # the slow visitor's query is still running
        assert "ran longer than" in pending.result(timeout=60)[2]
    finally:
        slow.close()
        quick.close()
    # Idle visitors lose their environments and slots: a socket gets in again.
    deadline = time.monotonic() + 120
    while ws_reply(web_server)["type"] != "observation":
        assert time.monotonic() < deadline, "idle visitors kept their slots"
        time.sleep(0.5)
