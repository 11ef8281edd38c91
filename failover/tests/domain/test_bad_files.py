"""No crash from a file: every bad process state is moved aside and reported; state is written 0600."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from failover.domain import files
from failover.domain.process_state import (
    PID_MAX,
    BadProcessState,
    ProcessStateCorrupt,
    ProcessStateStore,
    classify_previous_run,
    os_pid_alive,
    read_process_state,
)
from failover.domain.types import FailureType
from failover.tests.domain.bad_files import PROCESS_STATE_CASES, STATE, params, still_there
from failover.tests.domain.kit import T0, FakeClock
from failover.tests.domain.kit import process_state as make_state
from scalper_site.testkit import wait_until


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.mark.parametrize("case", params(PROCESS_STATE_CASES))
def test_every_bad_process_state_is_moved_aside_and_reported_as_data_corruption(tmp_path, case):
    path = tmp_path / "system" / "process_state.json"
    case.plant(path, STATE)
    store = ProcessStateStore(path, FakeClock())

    with pytest.raises(ProcessStateCorrupt) as caught:
        store.load()

    corrupt = caught.value
    assert not still_there(path) and still_there(corrupt.moved_to)  # moved, never deleted
    assert corrupt.moved_to.name.startswith("process_state.json.corrupt-")
    assert corrupt.error and len(corrupt.error) <= 600
    event = corrupt.failure_event(T0)
    assert event.type is FailureType.DATA_CORRUPTION and event.details["movedTo"] == corrupt.moved_to.name
    assert store.load() is None  # the next start is a first start, from exchange truth
    store.save(make_state())  # and the black box can be written again
    assert store.load() == make_state()


@pytest.mark.parametrize("case", params(PROCESS_STATE_CASES))
def test_reading_a_bad_process_state_without_side_effects_raises_one_error_and_leaves_it(tmp_path, case):
    path = tmp_path / "process_state.previous.json"
    case.plant(path, STATE)

    with pytest.raises(BadProcessState):
        read_process_state(path)

    assert still_there(path)


def test_the_valid_document_of_the_table_is_valid(tmp_path):
    path = tmp_path / "process_state.json"
    path.write_text(STATE.with_raw("4242"))
    state = read_process_state(path)
    assert state is not None and state.pid == 4242
    assert read_process_state(tmp_path / "absent.json") is None
    os.symlink("absent.json", tmp_path / "dangling.json")
    assert read_process_state(tmp_path / "dangling.json") is None  # a dangling link is a missing file


@pytest.mark.parametrize(
    "pid", [0, -1, -12345, PID_MAX + 1, 99_999_999_999, 10**5000, True],
    ids=["zero", "minus_one", "negative", "past_c_int", "99999999999", "5001_digits", "bool"],
)
def test_pid_alive_is_false_for_a_pid_no_process_can_have_and_never_raises(pid):
    assert os_pid_alive(pid) is False


def test_a_reused_pid_of_another_program_does_not_block_the_start():
    # After a reboot the old pid may be any process, even a live trader's: the account lease decides, not the pid.
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "run_trader"])
    try:
        wait_until(lambda: b"time.sleep" in Path(f"/proc/{other.pid}/cmdline").read_bytes(),
                   timeout=10, what="the child's command line")
        assert os_pid_alive(other.pid)
        assert classify_previous_run(make_state(pid=other.pid)) is FailureType.UNEXPECTED_SHUTDOWN
    finally:
        other.kill()
        other.wait()


# -- the primitives ---------------------------------------------------------


def test_read_bounded_refuses_what_is_not_a_regular_file_and_what_is_too_big(tmp_path):
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    os.symlink("loop", tmp_path / "loop")
    (tmp_path / "big").write_bytes(b"x" * 11)
    (tmp_path / "ok").write_bytes(b"x" * 10)
    with pytest.raises(files.FileRefused, match="a directory"):
        files.read_bounded(tmp_path / "dir", 10)
    with pytest.raises(files.FileRefused, match="a FIFO"):
        files.read_bounded(tmp_path / "fifo", 10)  # returns at once: no writer needed
    with pytest.raises(OSError, match="symbolic links"):
        files.read_bounded(tmp_path / "loop", 10)
    with pytest.raises(files.FileRefused, match="over the bound of 10"):
        files.read_bounded(tmp_path / "big", 10)
    assert files.read_bounded(tmp_path / "ok", 10) == b"x" * 10
    with pytest.raises(FileNotFoundError):
        files.read_bounded(tmp_path / "absent", 10)


def test_move_aside_moves_a_symlink_loop_and_a_directory_without_following_or_deleting(tmp_path):
    loop = tmp_path / "state.json"
    os.symlink("state.json", loop)
    moved = files.move_aside(loop, T0)
    assert not still_there(loop) and os.readlink(moved) == "state.json"
    folder = tmp_path / "other.json"
    folder.mkdir()
    (folder / "kept").write_text("evidence")
    moved = files.move_aside(folder, T0)
    assert not still_there(folder) and (moved / "kept").read_text() == "evidence"


def test_describe_error_is_one_bounded_line():
    assert files.describe_error(RecursionError("maximum recursion depth exceeded")) == "nested too deeply"
    assert files.describe_error(OSError(40, "Too many levels of symbolic links")) == "Too many levels of symbolic links"
    assert len(files.describe_error(ValueError("x" * 5000))) == 300


# -- data at rest -----------------------------------------------------------


@pytest.fixture
def open_umask():
    """A umask that would make every new file world-readable and writable."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_atomic_writes_create_0600_whatever_the_umask(tmp_path, open_umask):
    files.atomic_write_text(tmp_path / "a.txt", "secret")
    files.atomic_write_json(tmp_path / "b.json", {"k": 1})
    files.atomic_write_bytes(tmp_path / "c.bin", b"\x00")
    assert [_mode(tmp_path / n) for n in ("a.txt", "b.json", "c.bin")] == [0o600, 0o600, 0o600]


def test_a_json_mirror_is_rewritten_only_when_its_content_changes(tmp_path):
    path = tmp_path / "system" / "recovery_plan.json"
    assert files.atomic_write_json_if_changed(path, {"planId": "p-1", "steps": [1, 2]}) is True
    written = path.stat().st_ino
    assert files.atomic_write_json_if_changed(path, {"planId": "p-1", "steps": [1, 2]}) is False
    assert path.stat().st_ino == written  # the same file: not replaced
    assert files.atomic_write_json_if_changed(path, {"planId": "p-1", "steps": [1, 2, 3]}) is True
    assert json.loads(path.read_text())["steps"] == [1, 2, 3] and path.stat().st_ino != written
    # A torn or foreign file (as a crash or a hand edit leaves it) never counts as the same content.
    path.write_text('{"planId": "p-1", "ste')
    assert files.atomic_write_json_if_changed(path, {"planId": "p-1", "steps": [1, 2, 3]}) is True
    assert json.loads(path.read_text()) == {"planId": "p-1", "steps": [1, 2, 3]}
    with pytest.raises(ValueError):  # NaN is not JSON: refused, the file left as it was
        files.atomic_write_json_if_changed(path, {"x": float("nan")})
    assert json.loads(path.read_text()) == {"planId": "p-1", "steps": [1, 2, 3]}


def test_the_process_state_is_written_0600(tmp_path, open_umask):
    store = ProcessStateStore(tmp_path / "system" / "process_state.json", FakeClock())
    store.save(make_state())
    assert _mode(store.path) == 0o600
    assert json.loads(store.path.read_text())["pid"] == 12345


def test_secure_folder_creates_and_fixes_0700_and_secure_file_fixes_0600(tmp_path, open_umask):
    created = tmp_path / "new" / "system"
    files.secure_folder(created.parent)
    files.secure_folder(created)
    assert _mode(created.parent) == _mode(created) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    files.secure_folder(loose)
    assert _mode(loose) == 0o700
    secret = tmp_path / "secret"
    secret.write_text("k")
    secret.chmod(0o644)
    files.secure_file(secret)
    assert _mode(secret) == 0o600
    files.secure_file(tmp_path / "absent")  # nothing to fix: no error
    target = tmp_path / "elsewhere"
    target.write_text("not ours")
    target.chmod(0o644)
    os.symlink(target, tmp_path / "link")
    files.secure_file(tmp_path / "link")
    assert _mode(target) == 0o644  # a symlink's target is not changed through it
    planted = tmp_path / "process_state.json"
    planted.mkdir()
    planted.chmod(0o755)
    files.secure_file(planted)
    assert _mode(planted) == 0o755  # a folder in a file's place stays a readable folder, to be moved aside


def test_create_private_file_creates_0600_fixes_companions_and_never_follows_a_link(tmp_path, open_umask):
    db = tmp_path / "db.sqlite3"
    files.create_private_file(db, companions=("-wal", "-shm"))
    assert db.read_bytes() == b"" and _mode(db) == 0o600
    db.chmod(0o644)
    wal = tmp_path / "db.sqlite3-wal"
    wal.write_bytes(b"w")
    wal.chmod(0o644)
    files.create_private_file(db, companions=("-wal", "-shm"))
    assert _mode(db) == _mode(wal) == 0o600 and not (tmp_path / "db.sqlite3-shm").exists()
    os.symlink(tmp_path / "target", tmp_path / "link")
    files.create_private_file(tmp_path / "link")
    assert not (tmp_path / "target").exists()
