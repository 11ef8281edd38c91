"""Crash points: armed, counted and disarmed in-process; a real SIGKILL mid-write leaves a stray temp file only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from failover.domain.enums import FailureType, Phase, RunMode
from failover.domain.files import atomic_write_text
from failover.domain.process_state import ProcessStateStore
from failover.domain.types import ProcessState
from trading.engine import crashpoints
from trading.engine.crashpoints import AFTER_SEND, BEFORE_SEND, MID_STATE_WRITE, CrashPoints
from trading.exchange.connect import ExchangeTarget
from trading.trader.commands import Commands
from trading.trader.context import TraderSettings, build_context
from trading.trader.startup import previous_run

REPO = Path(__file__).resolve().parents[3]


class Deaths:
    """Stands in for SIGKILL: records the point instead of dying."""

    def __init__(self) -> None:
        self.points: list[str] = []

    def __call__(self, point: str) -> None:
        self.points.append(point)


@pytest.fixture
def registry() -> tuple[CrashPoints, Deaths]:
    deaths = Deaths()
    return CrashPoints(kill=deaths), deaths


def test_nothing_armed_never_kills(registry):
    points, deaths = registry
    for point in crashpoints.KNOWN_POINTS:
        points.reached(point)
    assert deaths.points == [] and points.armed is None


def test_an_armed_point_kills_at_its_nth_reach_from_now_and_only_once(registry):
    points, deaths = registry
    points.arm(AFTER_SEND, 3)
    points.reached(BEFORE_SEND)  # another point does not count
    points.reached(AFTER_SEND)
    points.reached(AFTER_SEND)
    assert deaths.points == [] and points.armed == crashpoints.Armed(AFTER_SEND, 1)
    points.reached(AFTER_SEND)
    points.reached(AFTER_SEND)
    assert deaths.points == [AFTER_SEND] and points.armed is None


def test_disarm_and_rearm_replace_what_was_armed(registry):
    points, deaths = registry
    points.arm(BEFORE_SEND)
    points.disarm()
    points.reached(BEFORE_SEND)
    points.arm(BEFORE_SEND, 2)
    points.arm(MID_STATE_WRITE)
    points.reached(BEFORE_SEND)
    points.reached(MID_STATE_WRITE)
    assert deaths.points == [MID_STATE_WRITE]


@pytest.mark.parametrize(("point", "after"), [("before_sned", 1), ("", 1), (BEFORE_SEND, 0), (BEFORE_SEND, True),
                                              (BEFORE_SEND, 1.5), ("recovery_step:NOT_A_STEP", 1)])
def test_an_unknown_point_or_a_bad_count_is_refused_and_arms_nothing(registry, point, after):
    points, _ = registry
    with pytest.raises(ValueError):
        points.arm(point, after)
    assert points.armed is None


def test_the_environment_arms_a_worker_point_only_with_fault_hooks_allowed(registry):
    points, _ = registry
    at = {"SCALPER_CRASH_AT": "recovery_step:RESYNC_ORDERS"}
    worker = crashpoints.WORKER_POINTS
    assert points.arm_from_environment(at, points=worker) is None  # hooks not allowed
    assert points.arm_from_environment({**at, "SCALPER_ALLOW_FAULT_HOOKS": "1", "SCALPER_CRASH_AFTER": "x"},
                                       points=worker) is None
    allowed = {"SCALPER_ALLOW_FAULT_HOOKS": "1"}
    assert points.arm_from_environment({**allowed, "SCALPER_CRASH_AT": BEFORE_SEND}, points=worker) is None
    assert points.armed is None
    armed = points.arm_from_environment({**at, **allowed, "SCALPER_CRASH_AFTER": "2"}, points=worker)
    assert armed == crashpoints.Armed("recovery_step:RESYNC_ORDERS", 2) == points.armed
    assert "recovery_step:RESYNC_ORDERS" in worker and set(worker).isdisjoint(crashpoints.TRADER_POINTS)


def test_passing_reaches_the_point_and_hands_the_value_on():
    crashpoints.disarm()
    assert crashpoints.passing(AFTER_SEND, {"orderId": "1"}) == {"orderId": "1"}


def test_the_midway_hook_sees_half_the_bytes_in_the_temp_file_and_the_old_file_intact(tmp_path):
    path = tmp_path / "state.json"
    atomic_write_text(path, "old")
    seen: list[tuple[str, str]] = []

    def midway() -> None:
        [temp] = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        seen.append((temp.read_text(), path.read_text()))

    atomic_write_text(path, "0123456789", midway=midway)
    assert seen == [("01234", "old")] and path.read_text() == "0123456789"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


# -- the trader's command ---------------------------------------------------------------------


def _commands(tmp_path: Path, *, allowed: bool) -> Commands:
    settings = TraderSettings(mode="SIM", symbols=["BTCUSDT"], run_id="r1", data_dir=tmp_path,
                              target=ExchangeTarget(), allow_fault_hooks=allowed)
    ctx = build_context(settings, services=SimpleNamespace(), control=SimpleNamespace(), post=lambda item: None)
    return Commands(ctx, SimpleNamespace(core=None), blackbox=None)


@pytest.fixture
def disarmed():
    crashpoints.disarm()
    yield
    crashpoints.disarm()


def test_arm_fault_arms_and_disarms_a_crash_point_and_leaves_the_other_fault_alone(tmp_path, disarmed):
    commands = _commands(tmp_path, allowed=True)
    commands.arm_fault(feature_engine_error="boom")
    answer = commands.arm_fault(crash_at=AFTER_SEND, crash_after=2)
    assert answer == {"featureEngineError": "boom", "crashAt": AFTER_SEND, "crashAfter": 2}
    assert crashpoints.REGISTRY.armed == crashpoints.Armed(AFTER_SEND, 2)
    assert commands.arm_fault(crash_at=None) == {"featureEngineError": "boom", "crashAt": None, "crashAfter": None}
    assert crashpoints.REGISTRY.armed is None


@pytest.mark.parametrize("args", [{"crash_at": "recovery_step:RESYNC_ORDERS"}, {"crash_at": "nowhere"},
                                  {"crash_at": BEFORE_SEND, "crash_after": 0}, {"crash_after": 2},
                                  {"crash_at": BEFORE_SEND, "feature_engine_error": "x", "crash_later": 1}])
def test_arm_fault_refuses_what_is_not_a_crash_point_of_the_trader_and_arms_nothing(tmp_path, disarmed, args):
    commands = _commands(tmp_path, allowed=True)
    with pytest.raises((ValueError, TypeError)):
        commands.arm_fault(**args)
    assert crashpoints.REGISTRY.armed is None and commands._ctx.hooks.feature_engine_error is None


def test_arm_fault_is_refused_without_fault_hooks(tmp_path, disarmed):
    with pytest.raises(PermissionError):
        _commands(tmp_path, allowed=False).arm_fault(crash_at=BEFORE_SEND)
    assert crashpoints.REGISTRY.armed is None


# -- a real SIGKILL in the middle of writing the process state ----------------------------------

_DIE_MID_WRITE = textwrap.dedent("""
    import os
    import sys
    from dataclasses import replace
    from datetime import UTC, datetime
    from failover.domain.enums import Phase, RunMode
    from failover.domain.process_state import ProcessStateStore
    from failover.domain.types import ProcessState
    from trading.engine import crashpoints

    store = ProcessStateStore(sys.argv[1], midway=lambda: crashpoints.reached(crashpoints.MID_STATE_WRITE))
    state = ProcessState(last_update=datetime.now(UTC), pid=os.getpid(), run_mode=RunMode.SIM,
                         phase=Phase.RUNNING, active_symbols=("BTCUSDT",))
    store.save(state)
    crashpoints.arm(crashpoints.MID_STATE_WRITE)
    store.save(replace(state, active_symbols=("BTCUSDT", "ETHUSDT")))
    print("not reached")
""")


@pytest.mark.slow
def test_a_kill_mid_write_leaves_the_previous_file_whole_and_the_next_start_removes_the_torn_temp(tmp_path):
    path = tmp_path / "system" / "process_state.json"
    done = subprocess.run([sys.executable, "-c", _DIE_MID_WRITE, str(path)], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert "crash point mid_state_write reached" in done.stderr and "not reached" not in done.stdout
    [temp] = [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(json.JSONDecodeError):
        json.loads(temp.read_text())  # half a document
    store = ProcessStateStore(path)
    [failure] = previous_run(store, now=datetime.now(UTC))
    assert failure.type is FailureType.UNEXPECTED_SHUTDOWN  # the whole previous file was read
    assert store.current is not None and store.current.active_symbols == ("BTCUSDT",)
    assert not temp.exists() and sorted(p.name for p in path.parent.iterdir()) == [
        "process_state.json", "process_state.previous.json"]


def test_a_live_pid_in_the_file_does_not_stop_the_start(tmp_path):
    # The pid guard is gone: the account lease decides who trades, so a live (or reused) pid blocks nothing.
    store = ProcessStateStore(tmp_path / "process_state.json")
    store.save(ProcessState(last_update=datetime.now(UTC), pid=os.getppid(), run_mode=RunMode.SIM,
                            phase=Phase.RUNNING, active_symbols=("BTCUSDT",)))
    temp = tmp_path / ".process_state.json.writing.tmp"
    temp.write_text("{")
    [failure] = previous_run(store, now=datetime.now(UTC))
    assert failure.type is FailureType.UNEXPECTED_SHUTDOWN
    assert not temp.exists()
