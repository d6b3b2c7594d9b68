"""The live page in a real browser (Debian's chromium, headless, driven by Selenium through
chromium-driver) against the real demo stack: `finsent.demo.run_demo` starts Kafka, PostgreSQL,
the worker and the API (processes), the demo key, webhook receiver and subscription, and feeds
the simulated stream with its planted surge on $ACME. The page must load without console
errors, draw both charts with data, list the latest items, and show the planted alert within
5 s of its row in Postgres; the latest items must show who each is about (a chip per entity in
its own tone, some found by name alone); its key chart must follow the new alert, show an alert's
key when the alert is clicked, an entity's when its chip is clicked, and open on the newest alert's key when the page is opened afresh; the
demo's webhook receiver must get the alert with a valid signature, and it is the demo's only
alert. Stories (issue 20): the page's own item and alert renderers, in the same browser, mark the
first item of a story "new", a story with copies "×N copies", nothing on rows without story
fields, and list an alert's stories with copies and sources; where the API's latest events carry
stories with copies, the page shows the badge. Saves docs/live-page.png (the fresh page after the
demo's report).

    apt-get install -y chromium chromium-driver     # once
    .venv/bin/python -m pytest tests/web -q
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from finsent.services import wait_for

pytestmark = pytest.mark.slow
CHROMIUM, DRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"
# the README's picture is retaken with FINSENT_UPDATE_SCREENSHOT=1; otherwise a test run leaves the checkout clean
SCREENSHOT = (Path(__file__).resolve().parents[2] / "docs" / "live-page.png" if os.environ.get("FINSENT_UPDATE_SCREENSHOT")
              else Path(tempfile.gettempdir()) / "finsent-live-page.png")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000"]
ALERT_ROW = """SELECT e.at FROM alert_event e WHERE e.key_type = 'ticker' AND e.key = 'ACME' AND e.event = 'opened'
ORDER BY e.id LIMIT 1"""


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    return wait_for(predicate, timeout, interval, what)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (apt-get install -y chromium chromium-driver; .ci/run does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def demo():
    """run_demo in a thread; yields (stack, release event, thread result) once the stack is up."""
    from finsent.demo import run_demo

    # not under pytest's tmp dir (0700, root's): pgserver runs PostgreSQL as its own user when root
    base = Path(tempfile.mkdtemp(prefix="finsent-demo-"))
    base.chmod(0o755)
    ready, release, result = threading.Event(), threading.Event(), {}

    def on_ready(stack):
        result["stack"] = stack
        ready.set()

    def run():
        result["rc"] = run_demo(base / "demo", 60.0, 60.0, on_ready=on_ready, release=release)
        ready.set()

    thread = threading.Thread(target=run, name="demo", daemon=True)
    thread.start()
    assert ready.wait(240), "the demo stack did not start"
    assert "stack" in result, "the demo stack failed to start"
    yield result["stack"], release, result
    release.set()
    thread.join(120)
    shutil.rmtree(base, ignore_errors=True)


def severe_logs(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def chart_traces(driver, chart: str) -> list[str]:
    return driver.execute_script(f"return (document.getElementById('{chart}').data || []).map(t => t.name)")


def key_chart_shows(driver, key: str) -> bool:
    return f"{key} negative share" in chart_traces(driver, "key-chart")


# the page's renderers (api/web/app.js) on events and alerts with and without story fields
RENDER_STORIES = """
const base = {published_at: '2026-12-05T12:00:00Z', source: 'wire-a', text: 'Acme falls', topic: 'earnings',
              tickers: ['ACME'], entities: [], sentiment: 'negative', p_negative: 0.9};
const badges = (i) => [...itemRow(i).querySelectorAll('.badge')].map(b => [b.className, b.textContent]);
const stories = (a) => { const li = alertItem('opened', a); const d = li.querySelector('.stories');
  return [d ? d.textContent : null, [...li.querySelectorAll('.story')].map(s => [s.dataset.storyId, s.title])]; };
const alert = {key_type: 'ticker', key: 'ACME', severity: 'high', n: 40, negatives: 30, p_value: 1e-9,
               window_start: '2026-12-05T12:00:00Z'};
return {
  old: badges(base),
  nulls: badges({...base, story_id: null, novel: null, copies: null}),
  first: badges({...base, story_id: 'wire-a/7', novel: true, copies: 1}),
  firstSeenAgain: badges({...base, story_id: 'wire-a/7', novel: true, copies: 4}),
  copy: badges({...base, story_id: 'wire-a/7', novel: false, copies: 23}),
  alertOld: stories(alert), alertNone: stories({...alert, stories: []}),
  alertTwo: stories({...alert, stories: [{story_id: 'wire-a/7', copies: 23, sources: ['wire-a', 'forum']},
                                         {story_id: 'wire-b/9', copies: 1, sources: ['wire-b']}]}),
};"""


def check_story_rendering(browser) -> None:
    got = browser.execute_script(RENDER_STORIES)
    assert got["old"] == [] and got["nulls"] == [], got
    assert got["first"] == [["badge novel", "new"]], got
    assert got["firstSeenAgain"] == [["badge novel", "new"], ["badge copies", "×4 copies"]], got
    assert got["copy"] == [["badge copies", "×23 copies"]], got
    assert got["alertOld"] == [None, []] and got["alertNone"] == [None, []], got
    text, spans = got["alertTwo"]
    assert text == "2 stories: ×23 wire-a, forum · ×1 wire-b", got
    assert [sid for sid, _ in spans] == ["wire-a/7", "wire-b/9"] and "23 copies from wire-a, forum" in spans[0][1]


def check_stories_on_the_page(browser, api_url: str) -> None:
    """Where the API's latest events carry a story with copies, the page shows the badge."""
    items = httpx.get(f"{api_url}/v1/events", params={"limit": 50}, timeout=10, trust_env=False).json()["items"]
    if any((i.get("copies") or 0) > 1 for i in items):
        wait_until(lambda: browser.find_elements("css selector", "#items .badge.copies"), 15, "a ×N copies badge")
    else:  # no story with copies in the latest events (stories not assigned by this worker): none shown
        assert not browser.find_elements("css selector", "#items .badge.copies")
    print(f"latest events with story fields: {sum(i.get('story_id') is not None for i in items)} of {len(items)}")


def test_live_page_on_the_demo_stack(demo, browser):
    stack, release, result = demo
    dsn = stack.pg.dsn
    # opened before the feed: no alert yet
    browser.get(stack.api_url + "/")
    wait_until(lambda: browser.find_element("id", "status").text == "live", 15, "the SSE stream to open")
    for chart in ("topic-chart", "key-chart"):  # the page refreshes every 10 s as rows arrive
        wait_until(lambda: int(browser.find_element("id", chart).get_attribute("data-points") or 0) > 0, 40,
                   f"{chart} data")
        traces = f"return document.querySelectorAll('#{chart} .scatterlayer .trace').length"
        wait_until(lambda: browser.execute_script(traces) > 0, 10, f"{chart} drawn")
    # no alert yet (unless a slow start let the planted one come first): the busiest ticker
    why = browser.find_element("id", "key-why").text
    assert why == "most mentioned in the latest items" or (
        why == "newest alert" and browser.find_elements("css selector", "#alerts li[data-key]")), why
    # the latest 50 items (the table is redrawn every 10 s: on a loaded machine the charts can have data
    # while fewer than 50 items were stored at the last redraw; 36 of 50 seen in a full-suite run)
    wait_until(lambda: len(browser.find_elements("css selector", "#items tr")) == 50, 30, "the latest 50 items")
    # who each item is about: a chip per entity in its own tone; the demo's untagged wires found by name
    chips = browser.execute_script("""return [...document.querySelectorAll('#items tr')].map(tr =>
        [...tr.querySelectorAll('button.chip')].map(b => [b.dataset.ticker, b.className, b.title]))""")
    flat = [c for row in chips for c in row]
    assert flat and all(c[1].split()[1] in ("negative", "neutral", "positive") for c in flat if c[0] != "ACME"), flat
    assert all(c[1].split()[1] in c[2] for c in flat if c[1].split()[1] != "unknown"), flat  # tone = its title's
    wait_until(lambda: browser.find_elements("css selector", "#items button.chip.by-name"), 30,
               "an item linked by name alone")

    # the planted alert: its row in Postgres, then the page (SSE), timed on one clock
    def alert_row():
        try:
            return conn.execute(ALERT_ROW).fetchone()
        except psycopg.OperationalError:  # the demo stopped its stack
            pytest.fail("the demo ended without the planted alert (see its output above)")

    with psycopg.connect(dsn, autocommit=True) as conn:
        row_at = wait_until(alert_row, 120, "the planted alert's row", 0.05)[0]
    wait_until(lambda: "ticker ACME" in browser.find_element("id", "alerts").text, 10, "the planted alert on the page")
    shown_after = time.time() - row_at.timestamp()
    assert shown_after <= 5.0, f"the alert appeared {shown_after:.2f} s after its row"
    # the key chart follows the new alert
    wait_until(lambda: key_chart_shows(browser, "ACME"), 10, "the key chart on the alert's ticker")
    assert browser.find_element("id", "key-why").text == "newest alert"

    # the demo's webhook receiver got it, signed
    wait_until(lambda: any(r.key == "ticker:ACME" and r.verified for r in stack.receiver.received), 10,
               "the verified webhook")
    assert stack.reported.wait(120), "the demo did not report"
    # the demo's only alert is the planted one
    assert {li.get_attribute("data-key") for li in browser.find_elements("css selector", "#alerts li")} == {
        "ticker:ACME"}

    # another key typed in, then a click on the alert: its key again, chosen
    key = browser.find_element("id", "key")
    key.clear()
    key.send_keys("AAPL\n")
    wait_until(lambda: key_chart_shows(browser, "AAPL"), 10, "the typed ticker's chart")
    assert browser.find_element("id", "key-why").text == "chosen"
    browser.find_element("css selector", "#alerts li[data-key='ticker:ACME']").click()
    wait_until(lambda: key_chart_shows(browser, "ACME"), 10, "the clicked alert's chart")
    assert "selected" in browser.find_element("css selector", "#alerts li[data-key='ticker:ACME']").get_attribute(
        "class")
    assert browser.current_url.endswith("/?ticker=ACME")
    # a click on an entity chip in the latest items opens that entity's chart
    clicked = browser.execute_script("""const b = [...document.querySelectorAll('#items button.chip')]
        .find(c => c.dataset.ticker !== 'ACME'); if (b) b.click(); return b ? b.dataset.ticker : null""")
    assert clicked, "no entity chip other than ACME in the latest items"
    wait_until(lambda: key_chart_shows(browser, clicked), 10, "the clicked entity's chart")
    assert browser.find_element("id", "key-why").text == "chosen"
    assert browser.current_url.endswith(f"/?ticker={clicked}")

    # a fresh page opens on the newest alert's key (not on the busiest ticker)
    browser.get(stack.api_url + "/")
    wait_until(lambda: key_chart_shows(browser, "ACME"), 20, "a fresh page on the alert's ticker")
    assert browser.find_element("id", "key-why").text == "newest alert"
    wait_until(lambda: int(browser.find_element("id", "topic-chart").get_attribute("data-points") or 0) > 0, 20,
               "topic chart data")
    check_stories_on_the_page(browser, stack.api_url)
    browser.set_window_size(1400, 1500)  # tall enough to show the latest items with their entity chips
    time.sleep(1)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT))
    assert severe_logs(browser) == []
    check_story_rendering(browser)
    print(f"planted alert shown {shown_after:.2f} s after its row")

    release.set()
    wait_until(lambda: "rc" in result, 120, "the demo to stop", 0.5)
    assert result["rc"] == 0
