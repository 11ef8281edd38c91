"""No crash loops from a file: each bad config, process state, exchange state and market file, case by case.

A bad ``config.json`` is refused with the built-in config in force, reported
(CONFIG_INVALID) once per distinct content, at start and on every reload, and
named by the heartbeat and the health; a bad process state is moved aside and
reported as DATA_CORRUPTION; a bad exchange state starts the simulator clean; a
bad market file ends its reading with a ``MarketFileError``. The slow tests run
a whole trader in this process for every case (the failover side stubbed).
"""

from __future__ import annotations

import gzip
import json
import os
import stat
import threading
from pathlib import Path

import pytest

from failover.domain.enums import Phase
from failover.domain.process_state import ProcessStateStore
from failover.tests.domain.bad_files import (
    COMMON,
    CONFIG,
    CONFIG_CASES,
    DEEP,
    PROCESS_STATE_CASES,
    STATE,
    BadFile,
    Document,
    at_field,
    oversized,
    params,
    still_there,
)
from failover.tests.domain.kit import T0, FakeClock
from failover.tests.domain.kit import process_state as make_state
from scalper_site.api.health import trader_services
from scalper_site.testkit import wait_until
from trading.domain.config import (
    DEFAULT_CONFIG,
    SOURCE_DEFAULT,
    SOURCE_FILE,
    ConfigApplied,
    ConfigEngine,
    ConfigEvent,
    ConfigInvalid,
)
from trading.engine.eventlog import read_events
from trading.exchange.connect import SIM, ExchangeTarget
from trading.marketdata import jsonl
from trading.marketdata.jsonl import MarketFileError, read_messages
from trading.simexchange import persistence
from trading.simexchange.core import SimExchange
from trading.simexchange.server import SimServer
from trading.tests.trader.fakes import Control, Gate
from trading.trader import startup
from trading.trader.process import Trader, TraderSettings


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _clear(path: Path) -> None:
    """Remove whatever is at ``path`` (a file, a link, a folder of the previous case)."""
    if path.is_dir() and not path.is_symlink():
        for child in path.iterdir():
            child.unlink()
        path.rmdir()
    elif still_there(path):
        path.unlink()


def _engine(path: Path) -> tuple[ConfigEngine, list[ConfigEvent]]:
    engine = ConfigEngine(path, FakeClock())
    events: list[ConfigEvent] = []
    engine.add_listener(events.append)
    return engine, events


# -- config.json --------------------------------------------------------------


@pytest.mark.parametrize("case", params(CONFIG_CASES))
def test_a_bad_config_at_start_is_refused_and_the_built_in_config_is_in_force(tmp_path, case):
    engine, events = _engine(tmp_path / "config" / "config.json")
    case.plant(engine.path, CONFIG)

    event = engine.load()

    assert isinstance(event, ConfigInvalid) and events == [event]
    assert event.errors and all(e.startswith(("(root)", "risk")) for e in event.errors)
    assert engine.config is DEFAULT_CONFIG and engine.source == SOURCE_DEFAULT
    assert engine.last_errors == event.errors
    assert still_there(engine.path)  # the operator's file is left for the operator


@pytest.mark.parametrize("case", params(CONFIG_CASES))
def test_a_bad_config_on_reload_is_reported_once_then_the_valid_file_is_applied(tmp_path, case):
    engine, events = _engine(tmp_path / "config" / "config.json")
    engine.path.parent.mkdir(parents=True)
    engine.path.write_text(json.dumps({"risk": {"max_open_positions": 5}}))
    engine.load()
    running = engine.config

    _clear(engine.path)
    case.plant(engine.path, CONFIG)
    refused = engine.poll()
    again = [engine.poll() for _ in range(3)]
    if not engine.path.is_symlink() and not stat.S_ISFIFO(os.stat(engine.path).st_mode):
        os.utime(engine.path, ns=(1, 1))  # touched, same content: still reported only once
    touched = engine.poll()

    assert isinstance(refused, ConfigInvalid) and again == [None, None, None] and touched is None
    assert [type(e) for e in events] == [ConfigApplied, ConfigInvalid]
    assert engine.config is running  # the FailoverManager's RESYNC_CONFIG decides the fallback
    _clear(engine.path)
    engine.path.write_text(json.dumps({"risk": {"max_open_positions": 4}}))
    applied = engine.poll()
    assert isinstance(applied, ConfigApplied) and applied.source == SOURCE_FILE and engine.last_errors == []
    assert engine.config.risk.max_open_positions == 4


def test_two_different_bad_contents_are_two_reports_and_an_explicit_load_always_reports(tmp_path):
    engine, events = _engine(tmp_path / "config.json")
    engine.path.write_text('{"risk": {"max_open_positions": "x"}}')
    engine.load()
    engine.path.write_text('{"risk": {"max_open_positions": "y"}}')
    os.utime(engine.path, ns=(2, 2))
    engine.poll()
    engine.load()
    assert [type(e) for e in events] == [ConfigInvalid, ConfigInvalid, ConfigInvalid]


def test_health_names_the_problem_of_an_invalid_config():
    beat = {"config": {"valid": False, "source": "fallback", "errors": ["risk.max_open_positions: Input should be"]}}
    config = trader_services(beat, config=DEFAULT_CONFIG)["config"]
    assert config.status.value == "ERROR"
    assert "fallback" in config.message and "risk.max_open_positions: Input should be" in config.message
    assert trader_services({"config": "garbage"}, config=DEFAULT_CONFIG)["config"].status.value == "OK"


# -- the process state at start -------------------------------------------------


@pytest.mark.parametrize("case", params(PROCESS_STATE_CASES))
def test_a_start_over_a_bad_process_state_reports_data_corruption_and_resyncs(tmp_path, case):
    store = ProcessStateStore(tmp_path / "system" / "process_state.json", FakeClock())
    case.plant(store.path, STATE)

    failures = startup.previous_run(store, now=T0)

    assert [f.type.value for f in failures] == ["DATA_CORRUPTION", "PROCESS_RESTART"]
    moved = failures[0].details["movedTo"]
    assert not still_there(store.path) and still_there(store.path.with_name(moved))


@pytest.fixture
def open_umask():
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_a_start_makes_the_data_folder_and_the_state_files_private(tmp_path, open_umask):
    system = tmp_path / "data" / "system"
    system.mkdir(parents=True, mode=0o777)
    for folder in (system, system.parent):
        folder.chmod(0o755)
    store = ProcessStateStore(system / "process_state.json", FakeClock())
    store.save(make_state(pid=999_999, phase=Phase.STOPPING))
    (system / "recovery_plan.json").write_text("{}")
    for name in ("process_state.json", "recovery_plan.json"):
        (system / name).chmod(0o644)  # as an older version (shutil.copyfile, a loose umask) left them

    failures = startup.previous_run(store, now=T0)

    assert [f.type.value for f in failures] == ["PROCESS_RESTART"]
    assert _mode(system.parent) == _mode(system) == 0o700
    for name in ("process_state.json", "process_state.previous.json", "recovery_plan.json"):
        assert _mode(system / name) == 0o600, name
    assert json.loads((system / "process_state.previous.json").read_text())["pid"] == 999_999


# -- the simulator's exchange_state.json ----------------------------------------


_FRESH = SimExchange().engine.to_state()
EXCHANGE = Document(valid={"version": 1, "savedAt": 0, "engine": _FRESH}, int_field=("engine", "seq"))


def _half_restorable(path: Path, doc: Document) -> None:
    """linkIds load before the wallet fails: the account must not keep half a restore."""
    path.write_text(json.dumps({**doc.valid, "engine": {**_FRESH, "linkIds": {"l": "o"}, "wallet": "x"}}))


SIM_CASES = (
    *COMMON,
    BadFile("oversized", oversized(persistence.MAX_STATE_BYTES)),
    BadFile("unknown_version", at_field("2", ("version",))),
    BadFile("engine_not_an_object", at_field("[]", ("engine",))),
    BadFile("order_not_an_object", at_field("[1]", ("engine", "orders"))),
    BadFile("seq_not_a_number", at_field('"abc"')),
    BadFile("wallet_garbage_after_good_fields", _half_restorable),
)


@pytest.mark.parametrize("case", params(SIM_CASES))
def test_the_simulator_starts_clean_over_a_bad_exchange_state_and_moves_it_aside(tmp_path, case):
    path = tmp_path / "exchange_state.json"
    case.plant(path, EXCHANGE)

    sim = SimExchange(state_path=path)

    assert sim.engine.orders == {} and sim.engine.link_ids == {} and sim.engine.positions == {}
    assert not still_there(path) and len(list(tmp_path.glob("exchange_state.json.corrupt-*"))) == 1
    sim.persist()
    assert _mode(path) == 0o600 and persistence.load_state(path) is not None


def test_the_simulator_state_file_is_made_private_at_start(tmp_path, open_umask):
    path = tmp_path / "exchange_state.json"
    persistence.save_state(path, _FRESH)
    assert _mode(path) == 0o600
    path.chmod(0o644)
    SimExchange(state_path=path)
    assert _mode(path) == 0o600


# -- market files -----------------------------------------------------------------


def _trade_line(ts: str) -> str:
    return '{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":' + ts + ',"data":[]}\n'


def _corrupt_gzip(path: Path) -> None:
    data = gzip.compress((_trade_line("1") * 2000).encode())
    path.write_bytes(data[:20] + bytes(b ^ 0x5A for b in data[20:60]) + data[60:])


MARKET_CASES = {
    "int_5000_digits": lambda p: p.write_text(_trade_line("1") + _trade_line("9" * 5000)),
    "deep_nesting": lambda p: p.write_text(_trade_line("1") + "[" * DEEP + "]" * DEEP + "\n"),
    "nan_timestamp": lambda p: p.write_text(_trade_line("NaN")),
    "binary": lambda p: p.write_bytes(b"\xff\xfe\x00\x01\n"),
    "nul_bytes": lambda p: p.write_bytes(b"\x00" * 100),
    "top_level_list": lambda p: p.write_text("[1, 2]\n"),
    "line_too_long": lambda p: p.write_text(_trade_line("1").replace('"data":[]', '"data":"' + "x" * 300 + '"')),
    "directory": lambda p: p.mkdir(),
    "symlink_loop": lambda p: os.symlink(p.name, p),
    "corrupt_gzip": _corrupt_gzip,
    "truncated_gzip": lambda p: p.write_bytes(gzip.compress((_trade_line("1") * 50).encode())[:-30]),
    "gzip_header_on_garbage": lambda p: p.write_bytes(b"\x1f\x8b\x08\x00garbage"),
}


@pytest.mark.parametrize("name", sorted(MARKET_CASES))
def test_a_bad_market_file_is_refused_with_a_clear_error_never_another_exception(tmp_path, monkeypatch, name):
    monkeypatch.setattr(jsonl, "MAX_LINE_CHARS", 200)
    path = tmp_path / ("market.jsonl.gz" if "gzip" in name else "market.jsonl")
    MARKET_CASES[name](path)

    with pytest.raises(MarketFileError) as caught:
        list(read_messages(path))

    assert str(caught.value).startswith(str(path))


def test_an_empty_market_file_has_no_messages(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    assert list(read_messages(tmp_path / "empty.jsonl")) == []


# -- a whole trader, in this process, for every case ----------------------------




class Services:
    """A FailoverManager that keeps safe mode on while any reported failure is active."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.active: set[str] = set()
        self.version = 1
        self.lock = threading.Lock()

    def environment_register(self, *, run_id: str = "", context: dict) -> None:
        self.calls.append("environment_register")

    def failover_gate(self, *, run_id: str = "") -> Gate:
        with self.lock:
            return Gate(safe_mode=bool(self.active), reason=min(self.active, default=None), version=self.version)

    def failure_report(self, *, event, run_id: str = "") -> Gate:
        with self.lock:
            self.calls.append(f"failure_report:{event.type.value}")
            self.active.add(event.type.value)
            self.version += 1
        return self.failover_gate()

    def failure_cleared(self, *, failure_type: str, run_id: str = "") -> Gate:
        with self.lock:
            self.calls.append(f"failure_cleared:{failure_type}")
            self.active.discard(failure_type)
            self.version += 1
        return self.failover_gate()


@pytest.fixture(scope="module")
def sim():
    server = SimServer().start()
    try:
        yield server
    finally:
        server.stop()


def _trader(data_dir: Path, sim: SimServer, max_runtime_s: float | None) -> tuple[Trader, Services, Control]:
    settings = TraderSettings(mode="SIM", symbols=["BTCUSDT"], run_id="bad-files", data_dir=data_dir,
                              target=ExchangeTarget(kind=SIM, base_url=sim.base_url), max_runtime_s=max_runtime_s)
    services, control = Services(), Control()
    return Trader(settings, services=services, control=control), services, control


def _failures(data_dir: Path) -> list[str]:
    return [e["type"] for e in read_events(data_dir / "events" / "_SYSTEM.jsonl") if e["event"] == "FAILURE"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("case", params(PROCESS_STATE_CASES))
def test_a_trader_starts_over_every_bad_process_state_and_reaches_safe_mode(tmp_path, sim, settings, case):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # no bus: the listener retries in the background
    path = tmp_path / "system" / "process_state.json"
    case.plant(path, STATE)
    trader, services, control = _trader(tmp_path, sim, max_runtime_s=0.5)

    assert trader.run() == 0

    assert _failures(tmp_path)[:2] == ["DATA_CORRUPTION", "PROCESS_RESTART"]
    assert "failure_report:DATA_CORRUPTION" in services.calls
    assert control.beats and control.beats[0]["safeMode"] is True and control.beats[0]["phase"] == "RUNNING"
    assert len(list(path.parent.glob("process_state.json.corrupt-*"))) == 1
    assert json.loads(path.read_text())["phase"] == "STOPPING"  # a fresh black box, 0600
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("case", params(CONFIG_CASES))
def test_a_trader_starts_over_every_bad_config_and_reaches_safe_mode_naming_it(tmp_path, sim, settings, case):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    path = tmp_path / "config" / "config.json"
    case.plant(path, CONFIG)
    trader, services, control = _trader(tmp_path, sim, max_runtime_s=0.5)

    assert trader.run() == 0

    assert "CONFIG_INVALID" in _failures(tmp_path) and "failure_report:CONFIG_INVALID" in services.calls
    beat = control.beats[0]
    assert beat["safeMode"] is True and beat["phase"] == "RUNNING"
    assert beat["config"]["valid"] is False and beat["config"]["source"] == "default" and beat["config"]["errors"]
    health = trader_services(beat, config=DEFAULT_CONFIG)["config"]
    assert health.status.value == "ERROR" and beat["config"]["errors"][0][:60] in health.message
    assert still_there(path)  # left for the operator


HOT_RELOAD_CASES = [c for c in CONFIG_CASES if c.name in {"int_5000_digits", "deep_nesting_100k", "symlink_loop",
                                                         "directory", "fifo", "string_for_a_number"}]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("case", params(tuple(HOT_RELOAD_CASES)))
def test_a_running_trader_reports_a_bad_config_reload_once_and_clears_it_when_fixed(tmp_path, sim, settings, case):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    path = tmp_path / "config" / "config.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"risk": {"max_open_positions": 2}}))
    trader, services, control = _trader(tmp_path, sim, max_runtime_s=None)
    runner = threading.Thread(target=trader.run, name="trader-under-test")
    runner.start()
    try:
        wait_until(lambda: control.beats, timeout=30, what="the first heartbeat")
        _clear(path)
        case.plant(path, CONFIG)
        wait_until(lambda: "failure_report:CONFIG_INVALID" in services.calls, timeout=30, what="CONFIG_INVALID")
        beats_then = len(control.beats)
        wait_until(lambda: len(control.beats) >= beats_then + 5, timeout=30, what="two more config polls")
        beat = control.beats[-1]
        assert beat["safeMode"] is True and beat["config"]["valid"] is False and beat["config"]["errors"]
        assert trader_services(beat, config=DEFAULT_CONFIG)["config"].status.value == "ERROR"
        assert services.calls.count("failure_report:CONFIG_INVALID") == 1  # once, not every 2 s
        _clear(path)
        path.write_text(json.dumps({"risk": {"max_open_positions": 2}}))
        wait_until(lambda: "failure_cleared:CONFIG_INVALID" in services.calls, timeout=30, what="the clearance")
        wait_until(lambda: control.beats[-1]["config"]["valid"] is True, timeout=30, what="a valid config beat")
    finally:
        trader.request_stop()
        runner.join(timeout=30)
    assert not runner.is_alive()  # the trader stopped cleanly
