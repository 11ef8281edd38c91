"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against a real uvicorn.

The badge must follow failures reported from other processes through Redis,
reconnect by itself when the server restarts, and the Run button must start one
integration run (also on a double click) that a real Celery worker finishes; a
run's report reads as tables of checks and metrics.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection

from scalper_site.testkit import (
    BASE_DIR,
    celery_worker_argv,
    env_on_test_database,
    free_port,
    start_process,
    stop_process,
    wait_until,
)

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

# Debian's package puts the browser here; CHROMIUM_PATH points elsewhere.
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PASSWORD = "pw-browser-123456"
FASTEST_SCENARIO = "TEST_C"  # restart with no positions: the shortest plan
RUN_TIMEOUT_S = 240


class Stack:
    """A uvicorn serving the ASGI app on the test database, restartable on the same port."""

    def __init__(self, logs: Path) -> None:
        self.port = free_port()
        self.logs = logs
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def env(self, queue: str) -> dict[str, str]:
        return env_on_test_database(connection, REDIS_URL=settings.REDIS_URL, CELERY_QUEUE=queue,
                                    DJANGO_SETTINGS_MODULE="scalper_site.settings")

    def start(self, queue: str) -> None:
        argv = [sys.executable, "-m", "uvicorn", "scalper_site.asgi:application", "--host", "127.0.0.1",
                "--port", str(self.port), "--log-level", "warning"]
        self.process = start_process(argv, env=self.env(queue), log=self.logs / "web.log")
        wait_until(lambda: requests.get(f"{self.url}/accounts/login/", timeout=2).status_code == 200,
                   timeout=60, what=f"uvicorn up (log {self.logs / 'web.log'})")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None


def _in_another_process(code: str, env: dict[str, str]) -> None:
    script = "import django; django.setup()\n" + code
    result = subprocess.run([sys.executable, "-c", script], cwd=BASE_DIR, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]


REPORT_FAILURE = (
    "from datetime import UTC, datetime\n"
    "from failover.domain.types import FailureEvent\n"
    "from failover.services import failure_report\n"
    "failure_report(event=FailureEvent(timestamp=datetime.now(UTC), type='EXCHANGE_UNAVAILABLE',\n"
    "    source='EXECUTION_ENGINE', message='REST 503 from the browser test'))\n"
)
FORCE_EXIT = "from failover.services import safe_mode_exit\nsafe_mode_exit(user='browser-test', force=True)\n"


LONG_VALUE = "ORDER_REQUEST " * 40
FAILED_RESULT = {
    "scenarioId": "TEST_B", "startedAt": "2025-11-18T15:00:00.000Z", "finishedAt": "2025-11-18T15:01:00.000Z",
    "success": False,
    "errors": [{"expectation": "safe mode is ON", "expected": True, "actual": False,
                "message": "safe mode is ON: expected True, got False"}],
    "metrics": {"tradesExecuted": 0, "failures": ["MODULE_CRASH"], "recoveryDurationMs": {"max": 900, "p50": 120},
                "longEvidence": LONG_VALUE},
    "checks": [{"expectation": "MODULE_CRASH from FEATURE_ENGINE", "expected": "MODULE_CRASH",
                "actual": "MODULE_CRASH", "passed": True, "message": ""},
               {"expectation": "safe mode is ON", "expected": True, "actual": False, "passed": False,
                "message": "safe mode is ON: expected True, got False"}],
}


FINISH_FAILED_RUN = (
    "from itests import services\n"
    "record = services.run_record_start(scenario_id='TEST_B', user='browser-test')\n"
    f"services.run_finish(run_id=record.run_id, result={FAILED_RESULT!r})\n"
)


def _open_failed_report(page, expect, env: dict[str, str]) -> None:
    """Finish a failed run through the service API (no scenario runs), then read its report on the page."""
    _in_another_process(FINISH_FAILED_RUN, env)  # the ORM refuses to run beside Playwright's event loop
    first_run = page.locator("#runs-table tbody tr").first
    expect(first_run).to_contain_text("TEST_B", timeout=10_000)
    expect(first_run.locator("td.run-result")).to_have_text("failed")
    first_run.locator("a.run-link").click()
    body = page.locator("#report-body")
    expect(body.locator("h3")).to_have_text(["Errors (1)", "Checks (2)", "Metrics"])  # errors first
    expect(body.locator("table.report-errors tbody tr")).to_contain_text("safe mode is ON")
    checks = body.locator("table.report-checks tbody tr")
    expect(checks.locator("td.check-result")).to_have_text(["PASS", "FAIL"])
    expect(checks.nth(1).locator("td")).to_have_text(["safe mode is ON", "true", "false", "FAIL"])
    expect(body.locator("dl.report-metrics dt")).to_have_count(4)
    metrics = page.evaluate("Object.fromEntries([...document.querySelectorAll('dl.report-metrics dt')]"
                            ".map((dt) => [dt.textContent, dt.nextElementSibling.textContent.trim()]))")
    assert metrics == {"tradesExecuted": "0", "failures": '["MODULE_CRASH"]',  # nested: compact JSON
                       "recoveryDurationMs": '{"max":900,"p50":120}', "longEvidence": LONG_VALUE.strip()}
    expect(page.locator("#report-json")).to_be_hidden()  # the raw JSON only behind its toggle
    # Nothing is clipped at the dialog's edge: long values wrap.
    overflowing = page.evaluate("(() => { const d = document.getElementById('report-dialog');"
                                " return [d, ...d.querySelectorAll('.scroll, dl')]"
                                ".filter((e) => e.scrollWidth > e.clientWidth + 1).map((e) => e.className); })()")
    assert overflowing == []


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium chromium-driver (or set CHROMIUM_PATH)")
    call_command("collectstatic", interactive=False, verbosity=0)  # whitenoise serves STATIC_ROOT
    get_user_model().objects.create_user("operator", password=PASSWORD, is_staff=True)
    server = Stack(tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def screenshots() -> Path:
    # The test run's artifacts folder (gitignored); DASHBOARD_SCREENSHOT_DIR points elsewhere.
    folder = Path(os.environ.get("DASHBOARD_SCREENSHOT_DIR", BASE_DIR / "data" / "tests" / "artifacts" / "dashboard"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_badge_follows_failures_from_other_processes_reconnects_and_run_button_works(stack, screenshots, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    # Failover chains go to a queue nobody consumes: recovery steps are not this test's subject and
    # must not move the badge behind its back. The integration run gets a queue with a worker.
    idle_queue, run_queue = f"idle-{uuid.uuid4().hex[:6]}", f"runs-{uuid.uuid4().hex[:6]}"
    stack.start(idle_queue)
    worker = None
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            page.goto(f"{stack.url}/")
            expect(page).to_have_url(f"{stack.url}/accounts/login/?next=/")
            page.fill("#id_username", "operator")
            page.fill("#id_password", PASSWORD)
            page.click("button[type=submit]")
            badge, conn = page.locator("#safe-mode-badge"), page.locator("#ws-status")
            expect(conn).to_have_attribute("data-state", "up", timeout=10_000)
            expect(badge).to_have_text("SAFE MODE: ON", timeout=10_000)  # a fresh environment starts fail-closed

            _in_another_process(FORCE_EXIT, stack.env(idle_queue))
            expect(badge).to_have_text("SAFE MODE: OFF", timeout=1_000)
            expect(badge).to_have_css("background-color", "rgb(46, 125, 50)")

            _in_another_process(REPORT_FAILURE, stack.env(idle_queue))
            expect(badge).to_have_text("SAFE MODE: ON", timeout=1_000)
            expect(badge).to_have_css("background-color", "rgb(198, 40, 40)")
            expect(page.locator("#fo-reason")).to_have_text("EXCHANGE_UNAVAILABLE")
            expect(page.locator("#fo-failure")).to_contain_text("REST 503 from the browser test")
            expect(page.locator("#plan-timeline li.step").first).to_contain_text("RESYNC_EXCHANGE_CONNECTION")
            expect(page.locator("#plan-timeline .pill").first).to_have_text("PENDING")
            expect(page.locator("#conditions-list li[data-type=EXCHANGE_UNAVAILABLE]")).to_contain_text(
                "once REST answers again")
            expect(page.locator("#alerts-table")).to_contain_text("EXCHANGE_UNAVAILABLE", timeout=5_000)
            page.screenshot(path=str(screenshots / "dashboard-safe-mode-on.png"), full_page=True)

            _in_another_process(FORCE_EXIT, stack.env(idle_queue))
            expect(badge).to_have_text("SAFE MODE: OFF", timeout=1_000)

            # The server goes away: the page says so, then reconnects by itself once it is back.
            stack.stop()
            expect(conn).to_have_attribute("data-state", "down", timeout=10_000)
            # Class order follows the order of events (a status render may land after the close): match words.
            expect(badge).to_have_class(re.compile(r"(?=.*\boff\b)(?=.*\bstale\b)"))
            stack.start(run_queue)
            expect(conn).to_have_attribute("data-state", "up", timeout=30_000)
            expect(badge).not_to_have_class(re.compile(r"\bstale\b"))

            worker = start_process(celery_worker_argv(name=run_queue), env=stack.env(run_queue),
                                   log=tmp_path / "worker.log")
            wait_until(lambda: b"ready." in (tmp_path / "worker.log").read_bytes(), timeout=60,
                       what=f"celery worker ready (log {tmp_path / 'worker.log'})")
            run_button = page.locator(f"button.run-button[data-scenario={FASTEST_SCENARIO}]")
            run_button.dblclick()  # an impatient operator: still one run
            first_run = page.locator("#runs-table tbody tr").first
            expect(first_run).to_contain_text(FASTEST_SCENARIO, timeout=10_000)
            expect(run_button).to_be_disabled()  # while its run is queued or running
            result = first_run.locator("td.run-result")
            expect(result).not_to_have_attribute("data-success", "null", timeout=RUN_TIMEOUT_S * 1000)
            expect(result).to_have_text("passed")
            expect(page.locator("#runs-table tbody tr")).to_have_count(1)  # the second click queued nothing
            run_id = first_run.locator("a.run-link").inner_text()
            expect(page.locator("#integration-message")).to_have_text(f"Run {run_id} passed.")
            expect(run_button).to_be_enabled()
            first_run.locator("a.run-link").click()
            checks = page.locator("#report-body table.report-checks tbody tr")
            expect(checks.first).to_be_visible()
            expect(checks.locator("td.check-result")).to_have_text(["PASS"] * checks.count())
            page.locator("#report-raw summary").click()
            expect(page.locator("#report-json")).to_contain_text(f'"runId": "{run_id}"')
            page.keyboard.press("Escape")
            page.screenshot(path=str(screenshots / "dashboard-after-run.png"), full_page=True)

            _open_failed_report(page, expect, stack.env(run_queue))
            page.screenshot(path=str(screenshots / "dashboard-failed-report.png"), full_page=False)
            page.keyboard.press("Escape")
            page.set_viewport_size({"width": 390, "height": 844})
            page.screenshot(path=str(screenshots / "dashboard-phone.png"), full_page=False)
            browser.close()
    finally:
        if worker is not None:
            stop_process(worker)
        client = redis.Redis.from_url(settings.REDIS_URL)
        client.delete(idle_queue, run_queue)  # the held recovery chains: nobody will ever run them
