"""The page's side of the version rule, in Chromium: stream.js with a stand-in socket and fetch.

A panel message older than the badge is never rendered (the page reads /api/dashboard/panels
instead); a late status push never moves the badge back; without the socket the page polls and
says so. No server: the modules run on a blank page against the fakes below.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from scalper_site.testkit import BASE_DIR

# A real Chromium, as the other browser tests; no table is read, the mark only keeps the session's database set up.
pytestmark = [pytest.mark.services, pytest.mark.django_db]

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
STATIC = BASE_DIR / "scalper_site" / "static" / "dashboard"
PAGE = '<main data-staff="1" data-operator="1"><section id="health-panel"></section></main>'
FAKES = """() => {
  window.sockets = [];
  window.WebSocket = class {
    constructor(url) { this.url = url; this.listeners = {}; window.sockets.push(this); }
    addEventListener(type, fn) { (this.listeners[type] ||= []).push(fn); }
    emit(type, event) { for (const fn of this.listeners[type] || []) fn(event); }
  };
  window.fetches = [];
  window.panelsBody = null;
  window.held = null;  // set to a promise to hold the answers until release()
  window.hold = () => { window.held = new Promise((resolve) => { window.release = resolve; }); };
  window.fetch = async (path) => {
    window.fetches.push(path);
    if (window.held) await window.held;
    return { status: 200, ok: true, json: async () => window.panelsBody };
  };
}"""
START = """() => {
  window.seen = [];
  window.stream = Scalper.createStream({
    onStatus: (data, version) => seen.push(["status", version, data.safeMode]),
    panels: { health: (data, version) => seen.push(["health", version, data.status]) },
    sections: { health: "health-panel" },
    onConnection: (up, text) => seen.push(["connection", up, text]),
  });
  stream.connect();
  sockets[0].emit("open", {});
  window.send = (type, version, data) => sockets[0].emit("message", { data: JSON.stringify({ type, version, data }) });
}"""


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium chromium-driver (or set CHROMIUM_PATH)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page()
        page.set_content(PAGE)
        page.evaluate(FAKES)
        for module in ("common.js", "stream.js"):
            page.add_script_tag(content=(STATIC / module).read_text())
        page.evaluate(START)
        yield page
        browser.close()


def test_a_panel_older_than_the_badge_is_not_shown_and_the_page_reads_all_panels_at_one_version(page):
    page.evaluate("""() => {
      send("failover.status", 5, { safeMode: true });
      send("health", 5, { status: "WARN" });
    }""")
    assert page.evaluate("seen") == [["connection", True, "live"], ["status", 5, True], ["health", 5, "WARN"]]
    assert page.evaluate("fetches") == []

    page.evaluate("""() => {
      hold();
      panelsBody = { version: 6, status: { safeMode: false }, health: { status: "OK" } };
      send("failover.status", 6, { safeMode: false });  // the badge moves on: health (5) is now behind it
      send("health", 5, { status: "WARN" });             // a panel read before the change: never shown
    }""")
    page.wait_for_function("fetches.length === 1")  # asked, not answered yet
    assert page.evaluate("document.getElementById('health-panel').classList.contains('behind')") is True
    assert page.evaluate("seen.length") == 4  # the new status only: the old health was not rendered
    page.evaluate("release()")
    page.wait_for_function("seen.length === 6")
    assert page.evaluate("fetches") == ["/api/dashboard/panels"]  # one read for the burst
    # The pushed status, then the read: the status again and health at the badge's version (never 5).
    assert page.evaluate("seen.slice(3)") == [["status", 6, False], ["status", 6, False], ["health", 6, "OK"]]
    assert page.evaluate("document.getElementById('health-panel').classList.contains('behind')") is False


def test_a_late_status_never_moves_the_badge_back_and_a_newer_panel_rereads_the_badge(page):
    page.evaluate("""() => {
      panelsBody = { version: 9, status: { safeMode: true }, health: { status: "ERROR" } };
      send("failover.status", 8, { safeMode: false });
      send("failover.status", 7, { safeMode: true });   // late: dropped
      send("health", 9, { status: "ERROR" });           // newer than the badge: shown, and the badge is read
    }""")
    page.wait_for_function("fetches.length === 1 && seen.length === 5")
    assert page.evaluate("seen.slice(1)") == [["status", 8, False], ["health", 9, "ERROR"], ["status", 9, True],
                                               ["health", 9, "ERROR"]]


def test_without_the_socket_the_page_polls_says_so_and_stops_once_it_is_back(page):
    page.evaluate("""() => {
      panelsBody = { version: 1, status: { safeMode: true }, health: { status: "OK" } };
      sockets[0].emit("close", {});
    }""")
    page.wait_for_function("fetches.length >= 1")
    assert page.evaluate("seen.filter((s) => s[0] === 'connection').pop()") == [
        "connection", False, "polling every 5 s, live connection down"]
    page.wait_for_function("sockets.length === 2", timeout=5_000)  # it reconnects by itself (backoff)
    page.evaluate("""() => sockets[1].emit("open", {})""")
    assert page.evaluate("seen.filter((s) => s[0] === 'connection').pop()") == ["connection", True, "live"]
