"""The dashboard under its Content-Security-Policy, in Debian's Chromium against a real uvicorn.

The policy allows only this site's scripts, styles and socket: the page must load, style itself,
open its websocket and fill its panels without one violation, and an inline script must be refused
(the control that shows violations are seen at all).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection

from scalper_site.testkit import env_on_test_database, free_port, start_process, stop_process, wait_until

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PASSWORD = "pw-csp-123456"
INLINE_SCRIPT = (
    "() => { const s = document.createElement('script'); s.textContent = 'window.inlineRan = true';"
    " document.body.appendChild(s); return window.inlineRan === true; }"
)


def test_the_dashboard_works_under_its_csp_and_an_inline_script_is_refused(tmp_path: Path):
    from playwright.sync_api import expect, sync_playwright

    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium chromium-driver (or set CHROMIUM_PATH)")
    call_command("collectstatic", interactive=False, verbosity=0)  # whitenoise serves STATIC_ROOT
    get_user_model().objects.create_user("csp-operator", password=PASSWORD, is_staff=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = env_on_test_database(connection, REDIS_URL=settings.REDIS_URL, DJANGO_SETTINGS_MODULE="scalper_site.settings",
                               SCALPER_CSP="enforce")
    argv = [sys.executable, "-m", "uvicorn", "scalper_site.asgi:application", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning"]
    web = start_process(argv, env=env, log=tmp_path / "web.log")
    try:
        wait_until(lambda: requests.get(f"{url}/accounts/login/", timeout=2).status_code == 200,
                   timeout=60, what=f"uvicorn up (log {tmp_path / 'web.log'})")
        policy = requests.get(f"{url}/accounts/login/", timeout=5).headers["Content-Security-Policy"]
        assert f"connect-src 'self' ws://127.0.0.1:{port}" in policy

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page()
            violations: list[str] = []
            page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)

            page.goto(f"{url}/")
            page.fill("#id_username", "csp-operator")
            page.fill("#id_password", PASSWORD)
            page.click("button[type=submit]")
            expect(page.locator("#ws-status")).to_have_attribute("data-state", "up", timeout=10_000)
            badge = page.locator("#safe-mode-badge")
            expect(badge).to_have_text("SAFE MODE: ON", timeout=10_000)
            expect(badge).to_have_css("background-color", "rgb(198, 40, 40)")  # dashboard.css applied
            expect(page.locator("#scenarios-table")).to_contain_text("TEST_C", timeout=10_000)  # fetch() allowed
            assert violations == []

            assert page.evaluate(INLINE_SCRIPT) is False
            wait_until(lambda: violations, timeout=10, what="the inline script reported as a CSP violation")
            browser.close()
    finally:
        stop_process(web)
