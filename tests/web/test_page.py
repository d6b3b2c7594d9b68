"""The live page in a real browser (Debian's chromium, headless, driven by Selenium through
chromium-driver) against a real API (uvicorn) on a database seeded through the worker's write
path: no console errors, both charts drawn with data, the latest items listed, and an alert
planted as an alert_event row appears on the page within 5 s. Saves docs/live-page.png.

    apt-get install -y chromium chromium-driver     # once
    .venv/bin/python -m pytest tests/web -q
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from finsent.services import wait_for

from core.pg import libpq_dsn
from core.settings import Settings
from tests.dashboards.seed import fresh_db, seed_small, utc_now

pytestmark = pytest.mark.slow
CHROMIUM, DRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "live-page.png"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000"]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    return wait_for(predicate, timeout, interval, what)


def make_app(settings: Settings):
    from api.main import create_app
    from api.routes import page

    app = create_app(settings)
    if not any(getattr(r, "path", None) == "/" for r in app.routes):  # until the lead mounts it in create_app
        app.include_router(page.router)
    return app


@pytest.fixture(scope="module")
def server(postgres):
    import uvicorn

    url = fresh_db(postgres, "web_page")
    asyncio.run(seed_small(url, utc_now()))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    settings = Settings(DATABASE_URL=url, sse_keepalive_s=0.5)
    srv = uvicorn.Server(uvicorn.Config(make_app(settings), log_level="warning", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: srv.started, 20, "uvicorn start")
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", libpq_dsn(url)
    srv.should_exit = True
    thread.join(15)


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


def plant_alert(dsn: str, key: str) -> None:
    """An alert and its `opened` alert_event, as the worker writes them (the insert NOTIFYs)."""
    import json
    from datetime import timedelta

    import psycopg

    now = utc_now()
    with psycopg.connect(dsn, autocommit=True) as c:
        alert_id = c.execute(
            "INSERT INTO alert (key_type, key, window_start, window_end, n, negatives, baseline_rate, baseline_n, z, "
            "p_value, severity, sample_event_ids) VALUES ('ticker', %s, %s, %s, 40, 31, 0.3, 20, 6.5, 1e-9, 'high', "
            "'{}') RETURNING id", (key, now - timedelta(minutes=2), now)).fetchone()[0]
        payload = {"alert_id": alert_id, "event": "opened", "key_type": "ticker", "key": key, "severity": "high",
                   "n": 40, "negatives": 31, "p_value": 1e-9, "z": 6.5, "window_start": now.isoformat(),
                   "sample_event_ids": []}
        c.execute("INSERT INTO alert_event (alert_id, event, revision, key_type, key, severity, payload) "
                  "VALUES (%s, 'opened', 0, 'ticker', %s, 'high', %s)", (alert_id, key, json.dumps(payload)))


def severe_logs(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_live_page(server, browser):
    url, dsn = server
    browser.get(url + "/")
    wait_until(lambda: browser.find_element("id", "status").text == "live", 10, "the SSE stream to open")
    for chart in ("topic-chart", "ticker-chart"):
        wait_until(lambda: int(browser.find_element("id", chart).get_attribute("data-points") or 0) > 0, 10,
                   f"{chart} data")
        traces = f"return document.querySelectorAll('#{chart} .scatterlayer .trace').length"
        wait_until(lambda: browser.execute_script(traces) > 0, 10, f"{chart} drawn")
    assert len(browser.find_elements("css selector", "#items tr")) == 50

    plant_alert(dsn, "PLNT")
    t0 = time.monotonic()
    wait_until(lambda: "ticker PLNT" in browser.find_element("id", "alerts").text, 5, "the planted alert on the page")
    shown_after = time.monotonic() - t0
    SCREENSHOT.parent.mkdir(exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT))
    assert severe_logs(browser) == []
    print(f"planted alert shown after {shown_after:.2f} s")
