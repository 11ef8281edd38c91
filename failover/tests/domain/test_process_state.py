"""The black box on disk: atomic writes, corrupt files moved aside, thread-safe updates, start verdicts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from failover.domain import files
from failover.domain.process_state import (
    PID_MAX,
    ProcessStateCorrupt,
    ProcessStateMissing,
    ProcessStateStore,
    classify_previous_run,
    os_pid_alive,
    startup_failure_event,
)
from failover.domain.types import FailureType, Phase
from failover.tests.domain.kit import T0, FakeClock, order, position, process_state


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> ProcessStateStore:
    return ProcessStateStore(tmp_path / "system" / "process_state.json", clock)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(files.TEMP_SUFFIX))


def test_save_then_load_returns_the_same_state(store):
    state = process_state(positions=(position(),), orders=(order(),))
    store.save(state)
    assert ProcessStateStore(store.path).load() == state
    assert json.loads(store.path.read_text()) == state.to_dict()


def test_load_without_a_file_means_first_start(store):
    assert store.load() is None


def test_save_leaves_no_temp_file_and_writes_complete_json(store):
    for n in range(5):
        store.save(process_state(pid=100 + n))
    assert _leftovers(store.path.parent) == []
    assert json.loads(store.path.read_text())["pid"] == 104


def test_crash_between_write_and_replace_keeps_the_old_file(store, monkeypatch):
    store.save(process_state(pid=1))
    before = store.path.read_bytes()

    def crash(src, dst):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(files.os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        store.save(process_state(pid=2))
    assert store.path.read_bytes() == before
    assert _leftovers(store.path.parent) == []
    assert store.current is not None and store.current.pid == 1  # memory follows the disk, not the attempt


def test_write_is_fsynced_before_the_rename(store, monkeypatch):
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(files.os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(files.os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b))[1])
    store.save(process_state())
    assert calls == ["fsync", "replace", "fsync"]  # the file, the rename, then the folder


def test_corrupt_file_is_moved_aside_and_reported(store, clock):
    store.path.parent.mkdir(parents=True)
    store.path.write_text('{"pid": 12345, "phase": ')
    with pytest.raises(ProcessStateCorrupt) as caught:
        store.load()
    corrupt = caught.value
    assert corrupt.moved_to == store.path.with_name("process_state.json.corrupt-20251118T152000Z")
    assert corrupt.moved_to.read_text() == '{"pid": 12345, "phase": '  # evidence kept byte for byte
    assert "invalid JSON" in corrupt.error
    assert not store.path.exists()
    assert store.load() is None  # the next start is a first start, from exchange truth
    failure = corrupt.failure_event(clock.now())
    assert failure.type is FailureType.DATA_CORRUPTION and failure.source == "PROCESS_STATE_STORE"
    assert failure.details["movedTo"] == corrupt.moved_to.name


def test_file_that_parses_but_does_not_validate_is_corrupt(store):
    store.save(process_state())
    data = json.loads(store.path.read_text())
    data["runMode"] = "PAPER"
    store.path.write_text(json.dumps(data))
    with pytest.raises(ProcessStateCorrupt, match="runMode: expected one of SIM"):
        store.load()


def test_two_corrupt_files_in_one_second_are_both_kept(store):
    store.path.parent.mkdir(parents=True)
    moved = []
    for content in ("first", "second", b"\xff\xfe"):
        if isinstance(content, bytes):
            store.path.write_bytes(content)
        else:
            store.path.write_text(content)
        with pytest.raises(ProcessStateCorrupt) as caught:
            store.load()
        moved.append(caught.value.moved_to)
    assert [p.name for p in moved] == [
        "process_state.json.corrupt-20251118T152000Z",
        "process_state.json.corrupt-20251118T152000Z-1",
        "process_state.json.corrupt-20251118T152000Z-2",
    ]
    assert moved[0].read_text() == "first" and moved[1].read_text() == "second"
    assert "not UTF-8" in str(caught.value)


def test_update_applies_fields_and_stamps_last_update(store, clock):
    store.save(process_state(phase=Phase.STARTING))
    clock.advance(7.5)
    state = store.update(phase=Phase.RUNNING, open_positions_snapshot=[position()])
    assert state.phase is Phase.RUNNING and state.last_update == clock.now()
    assert store.load() == state


def test_update_refuses_unknown_fields_and_bad_values(store):
    store.save(process_state())
    with pytest.raises(TypeError, match="openPositions"):
        store.update(openPositions=[])
    with pytest.raises(ValueError, match="phase"):
        store.update(phase="SLEEPING")
    assert store.load().phase is Phase.RUNNING  # nothing half-applied


def test_update_before_any_state_is_refused(store):
    with pytest.raises(ProcessStateMissing):
        store.update(phase=Phase.RUNNING)


def test_concurrent_updates_from_two_threads_keep_the_file_valid(store):
    store.save(process_state())
    errors: list[BaseException] = []

    def hammer(field: str, values: list) -> None:
        try:
            for value in values:
                store.update(**{field: value})
        except BaseException as exc:  # collected so the test fails on the main thread
            errors.append(exc)

    symbols = [tuple(f"S{i}USDT" for i in range(n)) for n in range(40)]
    orders = [tuple(order(f"c-{i}", f"e-{i}") for i in range(n)) for n in range(40)]
    threads = [threading.Thread(target=hammer, args=("active_symbols", symbols)),
               threading.Thread(target=hammer, args=("open_orders_snapshot", orders))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    final = ProcessStateStore(store.path).load()
    assert final == store.current  # neither thread's last write was lost
    assert final.active_symbols == symbols[-1] and final.open_orders_snapshot == orders[-1]
    assert _leftovers(store.path.parent) == []


def test_stale_temp_files_are_listed_and_removed_only_on_request(store):
    store.save(process_state())
    stale = store.path.with_name(".process_state.json.abc123.tmp")
    stale.write_text("{half")
    assert store.stale_temp_files() == [stale]
    assert store.load() == process_state()  # ignored by load
    assert store.remove_stale_temp_files() == [stale]
    assert not stale.exists()


def test_no_file_is_a_first_start():
    assert classify_previous_run(None) is None


@pytest.mark.parametrize("phase", [Phase.STOPPING, Phase.IDLE])
def test_graceful_phase_is_process_restart(phase):
    assert classify_previous_run(process_state(phase=phase)) is FailureType.PROCESS_RESTART


@pytest.mark.parametrize("phase", [Phase.RUNNING, Phase.RECOVERING, Phase.STARTING])
def test_mid_flight_phase_is_unexpected_shutdown(phase):
    assert classify_previous_run(process_state(phase=phase)) is FailureType.UNEXPECTED_SHUTDOWN


@pytest.mark.parametrize("pid", [os.getpid(), 1, PID_MAX])
def test_a_live_or_reused_pid_never_refuses_a_start(pid):
    # The account lease decides who trades; the pid in the file (alive, ours, reused after a reboot) does not.
    verdict = classify_previous_run(process_state(phase=Phase.RUNNING, pid=pid))
    assert verdict is FailureType.UNEXPECTED_SHUTDOWN


def test_startup_event_carries_the_previous_run_as_evidence():
    previous = process_state(phase=Phase.RUNNING, positions=(position(),), orders=(order(), order("c-2", "e-2")))
    failure = startup_failure_event(previous, FailureType.UNEXPECTED_SHUTDOWN, at=T0)
    assert failure.type is FailureType.UNEXPECTED_SHUTDOWN
    assert failure.details == {"previousPid": 12345, "previousPhase": "RUNNING",
                               "previousLastUpdate": "2025-11-18T15:20:00.000Z", "openPositions": 1, "openOrders": 2}
    with pytest.raises(ValueError):
        startup_failure_event(previous, FailureType.PACKET_LOSS, at=T0)


def test_os_pid_alive_sees_itself_and_not_a_reaped_child():
    assert os_pid_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not os_pid_alive(child.pid)


def test_saved_state_type_is_checked(store):
    with pytest.raises(TypeError):
        store.save(process_state().to_dict())  # type: ignore[arg-type]
    assert not store.path.exists()


def test_a_refused_write_is_named_until_one_succeeds_and_keep_sets_the_base_without_writing(store, monkeypatch):
    store.save(process_state(pid=1))
    real_replace = files.os.replace

    def full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", full)
    with pytest.raises(OSError):
        store.save(process_state(pid=2))
    assert "No space left" in store.failing and store.current.pid == 1
    store.keep(process_state(pid=3))
    assert store.current.pid == 3 and json.loads(store.path.read_text())["pid"] == 1  # kept, not written
    monkeypatch.setattr(files.os, "replace", real_replace)
    store.update(phase=Phase.RUNNING)  # the next write builds on the kept state
    assert store.failing is None and json.loads(store.path.read_text())["pid"] == 3
