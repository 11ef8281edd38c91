"""One whole trader run in this process, against the in-process simulator, with the failover side stubbed."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import threading
import time
from typing import Any

import pytest

from trading.engine.eventlog import read_events
from trading.exchange.connect import SIM, ExchangeTarget
from trading.models import EquitySample
from trading.simexchange.server import SimServer
from trading.tests.trader.fakes import Control, Gate
from trading.trader.context import TraderState
from trading.trader.folder_lock import DataFolderLock
from trading.trader.inbox import Inbox
from trading.trader.process import EXIT_FOLDER_BUSY, Trader, TraderSettings

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]




class Services:
    """The FailoverManager, agreeing to everything: the gate is open once the first start is reported."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.sources: list[str] = []  # of each failure reported

    def environment_register(self, *, run_id: str = "", context: dict) -> None:
        self.calls.append("environment_register")

    def failover_gate(self, *, run_id: str = "") -> Gate:
        return Gate()

    def failure_report(self, *, event, run_id: str = "") -> Gate:
        self.calls.append(f"failure_report:{event.type.value}")
        self.sources.append(event.source)
        return Gate(version=2)

    def failure_cleared(self, *, failure_type: str, run_id: str = "") -> Gate:
        self.calls.append(f"failure_cleared:{failure_type}")
        return Gate(version=3)


@pytest.fixture
def sim():
    server = SimServer().start()
    try:
        yield server
    finally:
        server.stop()


def test_a_trader_starts_in_order_runs_its_timers_and_stops_cleanly(tmp_path, sim, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # no bus: the listener retries in the background
    trader_settings = TraderSettings(
        mode="SIM",
        symbols=["BTCUSDT"],
        run_id="solo",
        data_dir=tmp_path,
        target=ExchangeTarget(kind=SIM, base_url=sim.base_url),
        max_runtime_s=3.0,
    )
    services, control = Services(), Control()

    assert Trader(trader_settings, services=services, control=control).run() == 0

    assert services.calls[:2] == ["environment_register", "failure_report:PROCESS_RESTART"]
    events = [e["event"] for e in read_events(tmp_path / "events" / "_SYSTEM.jsonl")]
    assert events[0] == "FAILURE" and events[-1] == "TRADER_STOPPED"
    assert events.index("TRADER_STARTED") < events.index("TRADER_STOPPED")
    assert "FAILOVER_STATE" in events
    beat = control.beats[-1]
    assert list(beat) == [
        "pid", "phase", "at", "mode", "symbols", "safeMode", "streams", "marketData", "restFailuresInARow",
        "latencyAvgMs", "config", "counters", "positions", "openOrders", "symbolStatus", "detectors", "role", "lease",
        "dcp",
    ]
    assert beat["role"] == "LEADER" and beat["lease"] is None  # built without a lease: alone by construction
    assert beat["phase"] == "RUNNING" and set(beat["streams"]) == {"public", "private"} and len(control.beats) >= 2
    assert list(beat["symbolStatus"]) == ["BTCUSDT"] and beat["symbolStatus"]["BTCUSDT"]["state"]
    # The first heartbeat asked for an equity sample: read from the simulator's wallet, written off the loop.
    deadline = time.monotonic() + 10
    while not EquitySample.objects.filter(run_id="solo").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    sample = EquitySample.objects.get(run_id="solo")
    assert sample.trigger == "TIMER" and sample.equity > 0 and sample.wallet_balance > 0
    state = json.loads((tmp_path / "system" / "process_state.json").read_text())
    assert state["phase"] == "STOPPING" and state["activeSymbols"] == ["BTCUSDT"]


def test_a_trader_on_a_folder_another_trader_holds_starts_nothing_and_says_why(tmp_path, sim, settings, caplog):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    held = DataFolderLock(tmp_path, run_id="the-other").acquire(0)
    trader_settings = TraderSettings(mode="SIM", symbols=["BTCUSDT"], run_id="second", data_dir=tmp_path,
                                     target=ExchangeTarget(kind=SIM, base_url=sim.base_url), folder_wait_s=0.3)
    services, control = Services(), Control()
    try:
        assert Trader(trader_settings, services=services, control=control).run() == EXIT_FOLDER_BUSY
    finally:
        held.release()

    assert services.calls == []  # nothing reported, registered or started
    assert not (tmp_path / "system" / "process_state.json").exists()
    assert not list((tmp_path / "events").glob("*.jsonl"))
    assert "in use by another trader (pid" in caplog.text and "'the-other'" in caplog.text


class Script(threading.Thread):
    """Steps beside a running trader: each waits (at most 30 s) for what the trader should have done, then acts;
    the trader is stopped at the end. A step waited for in vain is kept in ``missed``: no step rides on timing."""

    def __init__(self, trader: Trader, steps: list[tuple[str, Any, Any]]) -> None:
        super().__init__(daemon=True)
        self.trader, self.steps, self.missed = trader, steps, []

    def run(self) -> None:
        try:
            for what, until, then in self.steps:
                deadline = time.monotonic() + 30
                while not until():
                    if time.monotonic() > deadline:
                        self.missed.append(what)
                        return
                    time.sleep(0.02)
                then()
        finally:
            self.trader.request_stop()


def _run_with(trader: Trader, steps: list[tuple[str, Any, Any]]) -> None:
    script = Script(trader, steps)
    script.start()
    assert trader.run() == 0  # up all along: no failure here ends the process
    script.join(10)
    assert script.missed == []


def _settings(data, run_id: str, sim) -> TraderSettings:
    (data / "config").mkdir(exist_ok=True)
    (data / "config" / "config.json").write_text(
        json.dumps({"failover": {"detectors": {"module_crash_quiet_s": 1.0}}}))
    return TraderSettings(mode="SIM", symbols=["BTCUSDT"], run_id=run_id, data_dir=data,
                          target=ExchangeTarget(kind=SIM, base_url=sim.base_url), max_runtime_s=90.0)


def _reported(services: Services, call: str):
    return lambda: call in services.calls


def test_an_event_log_that_cannot_be_written_is_a_crash_held_until_it_can_and_never_stops_the_trader(
        tmp_path, sim, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    (tmp_path / "events").mkdir()
    system = tmp_path / "events" / "_SYSTEM.jsonl"
    system.symlink_to("/dev/full")  # every write: ENOSPC, as on a full disk
    services = Services()
    trader = Trader(_settings(tmp_path, "full", sim), services=services, control=Control())
    _run_with(trader, [
        ("MODULE_CRASH reported while the log is lost", _reported(services, "failure_report:MODULE_CRASH"),
         system.unlink),  # space back: the next write makes a file again
        ("MODULE_CRASH cleared once it is written", _reported(services, "failure_cleared:MODULE_CRASH"), lambda: None),
    ])
    events = list(read_events(system))
    [resumed] = [e for e in events if e["event"] == "EVENT_LOG_RESUMED"]
    assert resumed["lost"] > 0
    assert events[-1]["event"] == "TRADER_STOPPED"


def test_a_timer_that_keeps_raising_is_a_crash_held_while_it_does_and_cleared_once_it_runs_clean(
        tmp_path, sim, settings, monkeypatch):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    broken, failed = [True], []
    check_health = Inbox.check_health

    def health_check_with_a_bug(inbox: Inbox) -> None:
        if broken[0]:
            failed.append(1)
            raise RuntimeError("a health check with a bug")
        check_health(inbox)

    monkeypatch.setattr(Inbox, "check_health", health_check_with_a_bug)  # the watchdog timer's action
    services, held = Services(), []
    trader = Trader(_settings(tmp_path, "timer", sim), services=services, control=Control())

    def mend() -> None:
        held.append("failure_cleared:MODULE_CRASH" not in services.calls)
        broken[0] = False

    _run_with(trader, [
        ("MODULE_CRASH of the watchdog timer reported", lambda: "TRADER_TIMER_WATCHDOG" in services.sources,
         lambda: None),
        # every 0.5 s, so five failures span twice the quiet time (1 s): had one run clean, it would have cleared
        ("the timer failing on, five times", lambda: len(failed) >= 5, mend),
        ("MODULE_CRASH cleared once the timer runs clean", _reported(services, "failure_cleared:MODULE_CRASH"),
         lambda: None),
    ])
    assert held == [True]  # no clearing while it failed
    assert services.calls.count("failure_report:MODULE_CRASH") == 1  # one episode, however many failures
    events = [e for e in read_events(tmp_path / "events" / "_SYSTEM.jsonl") if e["event"] == "FAILURE"]
    assert any(e.get("source") == "TRADER_TIMER_WATCHDOG" for e in events)


@contextlib.contextmanager
def _small_disk(folder, size: str = "4m", inodes: int = 0):
    """``folder`` on a tmpfs of ``size`` (and at most ``inodes`` files and folders): a disk that can really fill up.
    Skips where mounting is not allowed."""
    folder.mkdir()
    options = f"size={size},mode=0700" + (f",nr_inodes={inodes}" if inodes else "")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                             capture_output=True, text=True, timeout=30)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()[:200]}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


def _fill(folder) -> None:
    """Write a ballast file until the disk refuses."""
    with open(folder / "ballast", "wb", buffering=0) as ballast, contextlib.suppress(OSError):
        while True:
            ballast.write(b"\0" * 65536)


def _fill_up(folder) -> None:
    """Fill the disk's blocks, then its inodes: not even an empty file or folder can be made after."""
    _fill(folder)
    with contextlib.suppress(OSError):
        for n in range(100_000):
            (folder / f"empty-{n}").touch()


def _room_back(folder) -> None:
    (folder / "ballast").unlink()
    for empty in folder.glob("empty-*"):
        empty.unlink()


def test_a_trader_on_a_disk_that_cannot_take_its_lock_file_starts_nothing_and_says_why(tmp_path, sim, settings,
                                                                                       caplog):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    with _small_disk(tmp_path / "data", inodes=64) as data:
        trader_settings = dataclasses.replace(_settings(data, "no-lock", sim), folder_wait_s=1.0)
        _fill_up(data)
        services = Services()
        assert Trader(trader_settings, services=services, control=Control()).run() == EXIT_FOLDER_BUSY
        assert services.calls == []  # nothing reported, registered or started
        assert "cannot hold its lock file" in caplog.text and "No space left on device" in caplog.text
        _room_back(data)  # the supervisor's next start, once there is room, takes the folder
        trader_settings = dataclasses.replace(trader_settings, max_runtime_s=1.0)
        assert Trader(trader_settings, services=services, control=Control()).run() == 0
        assert "environment_register" in services.calls


def test_a_trader_started_on_a_full_disk_without_its_events_folder_stays_up_and_makes_it_once_it_can(
        tmp_path, sim, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    with _small_disk(tmp_path / "data", inodes=64) as data:
        trader_settings = _settings(data, "no-events", sim)
        DataFolderLock(data).acquire(0).release()  # a folder that held a trader before: system/ and its lock file
        _fill_up(data)
        services = Services()
        trader = Trader(trader_settings, services=services, control=Control())
        _run_with(trader, [  # building the event log used to raise ENOSPC making events/
            ("MODULE_CRASH reported on the full disk", _reported(services, "failure_report:MODULE_CRASH"),
             lambda: _room_back(data)),
            ("MODULE_CRASH cleared once there is room", _reported(services, "failure_cleared:MODULE_CRASH"),
             lambda: None),
        ])
        assert any(e["event"] == "EVENT_LOG_RESUMED" for e in read_events(data / "events" / "_SYSTEM.jsonl"))


def test_a_disk_that_fills_up_under_a_running_trader_holds_safe_mode_until_space_is_back(tmp_path, sim, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    with _small_disk(tmp_path / "data") as data:
        services = Services()
        trader = Trader(_settings(data, "disk", sim), services=services, control=Control())

        def fill_then_write() -> None:
            _fill(data)
            for version in range(200):  # failover state changes, each an event line: enough to need a new page
                trader.queue.put(("failover_changed", Gate(safe_mode=True, version=version)))

        _run_with(trader, [
            ("the trader running", lambda: trader.ctx.state == TraderState.RUNNING, fill_then_write),
            ("MODULE_CRASH reported on the full disk", _reported(services, "failure_report:MODULE_CRASH"),
             (data / "ballast").unlink),
            ("MODULE_CRASH cleared once there is room", _reported(services, "failure_cleared:MODULE_CRASH"),
             lambda: None),
        ])
        events = list(read_events(data / "events" / "_SYSTEM.jsonl"))
        assert any(e["event"] == "EVENT_LOG_RESUMED" and e["lost"] > 0 for e in events)
        assert events[-1]["event"] == "TRADER_STOPPED"


def test_a_trader_started_on_a_full_disk_stays_up_says_why_and_clears_it_once_space_is_back(tmp_path, sim, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    with _small_disk(tmp_path / "data") as data:
        for folder in ("events", "system"):  # a deployment's folders exist before its disk fills
            (data / folder).mkdir()
        trader_settings = _settings(data, "full-start", sim)
        _fill(data)
        services = Services()
        trader = Trader(trader_settings, services=services, control=Control())
        _run_with(trader, [  # run() itself is the first check: it used to raise ENOSPC at start
            ("MODULE_CRASH reported on the full disk", _reported(services, "failure_report:MODULE_CRASH"),
             (data / "ballast").unlink),
            ("MODULE_CRASH cleared once there is room", _reported(services, "failure_cleared:MODULE_CRASH"),
             lambda: None),
        ])
        state = json.loads((data / "system" / "process_state.json").read_text())
        assert state["phase"] == "STOPPING"  # written again once there was room, to the last
        assert any(e["event"] == "EVENT_LOG_RESUMED" for e in read_events(data / "events" / "_SYSTEM.jsonl"))
