"""One whole trader run in this process, against the in-process simulator, with the failover side stubbed."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time

import pytest

from trading.engine.eventlog import read_events
from trading.exchange.connect import SIM, ExchangeTarget
from trading.models import EquitySample
from trading.simexchange.server import SimServer
from trading.tests.trader.fakes import Control, Gate
from trading.trader.folder_lock import DataFolderLock
from trading.trader.process import EXIT_FOLDER_BUSY, Trader, TraderSettings

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]




class Services:
    """The FailoverManager, agreeing to everything: the gate is open once the first start is reported."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def environment_register(self, *, run_id: str = "", context: dict) -> None:
        self.calls.append("environment_register")

    def failover_gate(self, *, run_id: str = "") -> Gate:
        return Gate()

    def failure_report(self, *, event, run_id: str = "") -> Gate:
        self.calls.append(f"failure_report:{event.type.value}")
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


def test_an_event_log_that_cannot_be_written_is_a_crash_held_until_it_can_and_never_stops_the_trader(
        tmp_path, sim, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.json").write_text(
        json.dumps({"failover": {"detectors": {"module_crash_quiet_s": 1.0}}}))
    (tmp_path / "events").mkdir()
    system = tmp_path / "events" / "_SYSTEM.jsonl"
    system.symlink_to("/dev/full")  # every write: ENOSPC, as on a full disk
    freed = threading.Timer(2.0, system.unlink)  # space back: the next write makes a file again
    trader_settings = TraderSettings(mode="SIM", symbols=["BTCUSDT"], run_id="full", data_dir=tmp_path,
                                     target=ExchangeTarget(kind=SIM, base_url=sim.base_url), max_runtime_s=5.0)
    services, control = Services(), Control()
    freed.start()
    try:
        assert Trader(trader_settings, services=services, control=control).run() == 0  # up all along
    finally:
        freed.cancel()

    crash = services.calls.index("failure_report:MODULE_CRASH")
    assert "failure_cleared:MODULE_CRASH" in services.calls[crash:]  # held while lost, cleared once written
    events = list(read_events(system))
    [resumed] = [e for e in events if e["event"] == "EVENT_LOG_RESUMED"]
    assert resumed["lost"] > 0
    assert events[-1]["event"] == "TRADER_STOPPED"


@contextlib.contextmanager
def _small_disk(folder, size: str = "4m"):
    """``folder`` on a tmpfs of ``size``: a disk that can really fill up. Skips where mounting is not allowed."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)],
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


def test_a_disk_that_fills_up_under_a_running_trader_holds_safe_mode_until_space_is_back(tmp_path, sim, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    with _small_disk(tmp_path / "data") as data:
        (data / "config").mkdir()
        (data / "config" / "config.json").write_text(
            json.dumps({"failover": {"detectors": {"module_crash_quiet_s": 1.0}}}))
        trader_settings = TraderSettings(mode="SIM", symbols=["BTCUSDT"], run_id="disk", data_dir=data,
                                         target=ExchangeTarget(kind=SIM, base_url=sim.base_url), max_runtime_s=6.0)
        services, control = Services(), Control()
        trader = Trader(trader_settings, services=services, control=control)
        timeline = [
            threading.Timer(1.0, _fill, [data]),
            # Writes while the disk is full: failover state changes, each an event line (enough to need a new page).
            threading.Timer(1.5, lambda: [trader.queue.put(("failover_changed", Gate(safe_mode=True, version=v)))
                                          for v in range(200)]),
            threading.Timer(3.0, (data / "ballast").unlink),
        ]
        for step in timeline:
            step.start()
        try:
            assert trader.run() == 0  # up all along
        finally:
            for step in timeline:
                step.cancel()
        crash = services.calls.index("failure_report:MODULE_CRASH")
        assert "failure_cleared:MODULE_CRASH" in services.calls[crash:]
        events = list(read_events(data / "events" / "_SYSTEM.jsonl"))
        assert any(e["event"] == "EVENT_LOG_RESUMED" and e["lost"] > 0 for e in events)
        assert events[-1]["event"] == "TRADER_STOPPED"


def test_a_trader_started_on_a_full_disk_stays_up_says_why_and_clears_it_once_space_is_back(tmp_path, sim, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    with _small_disk(tmp_path / "data") as data:
        for folder in ("config", "events", "system"):  # a deployment's folders exist before its disk fills
            (data / folder).mkdir()
        (data / "config" / "config.json").write_text(
            json.dumps({"failover": {"detectors": {"module_crash_quiet_s": 1.0}}}))
        _fill(data)
        trader_settings = TraderSettings(mode="SIM", symbols=["BTCUSDT"], run_id="full-start", data_dir=data,
                                         target=ExchangeTarget(kind=SIM, base_url=sim.base_url), max_runtime_s=6.0)
        services, control = Services(), Control()
        freed = threading.Timer(2.5, (data / "ballast").unlink)
        freed.start()
        try:
            assert Trader(trader_settings, services=services, control=control).run() == 0  # it did not die at start
        finally:
            freed.cancel()
        crash = services.calls.index("failure_report:MODULE_CRASH")
        assert "failure_cleared:MODULE_CRASH" in services.calls[crash:]
        state = json.loads((data / "system" / "process_state.json").read_text())
        assert state["phase"] == "STOPPING"  # written again once there was room, to the last
        assert any(e["event"] == "EVENT_LOG_RESUMED" for e in read_events(data / "events" / "_SYSTEM.jsonl"))
