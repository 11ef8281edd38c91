"""One trader per data folder: the lock refuses a second holder, waits a bounded time, and dies with its process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from scalper_site.testkit import BASE_DIR
from trading.trader.folder_lock import LOCK_NAME, DataFolderBusy, DataFolderLock, DataFolderUnusable

HOLDER = """
import sys, time
from pathlib import Path
from trading.trader.folder_lock import DataFolderLock
DataFolderLock(Path(sys.argv[1]), run_id="other-run").acquire(0)
print("held", flush=True)
time.sleep(60)
"""


def test_a_second_lock_on_the_folder_is_refused_naming_the_holder_then_taken_once_released(tmp_path):
    first = DataFolderLock(tmp_path, run_id="first").acquire(0)

    with pytest.raises(DataFolderBusy) as refused:
        DataFolderLock(tmp_path, run_id="second").acquire(0)

    assert f"pid {os.getpid()}, run id 'first'" in str(refused.value)
    assert "--data-dir" in str(refused.value)
    first.release()
    second = DataFolderLock(tmp_path, run_id="second").acquire(0)
    assert second.held and not first.held
    assert json.loads((tmp_path / "system" / LOCK_NAME).read_text())["runId"] == "second"
    second.release()
    assert (tmp_path / "system" / LOCK_NAME).exists()  # never deleted: a deleted lock file splits the lock


def test_a_start_waits_for_a_holder_that_is_stopping(tmp_path):
    first = DataFolderLock(tmp_path).acquire(0)
    threading.Timer(0.3, first.release).start()

    second = DataFolderLock(tmp_path).acquire(10)

    assert second.held
    second.release()


@pytest.fixture
def held(tmp_path):
    """The folder's lock, held by this test as by another trader."""
    lock = DataFolderLock(tmp_path, run_id="holder").acquire(0)
    yield lock
    lock.release()


def test_the_wait_is_bounded_by_the_clock(tmp_path, held):
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    with pytest.raises(DataFolderBusy):
        DataFolderLock(tmp_path, clock=lambda: now[0], sleep=sleep).acquire(2.0)

    assert 19 <= len(sleeps) <= 21  # polled every 0.1 s for the 2 s asked, then gave up


def test_a_holder_killed_with_sigkill_leaves_no_stale_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], cwd=BASE_DIR, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(DataFolderBusy, match=f"pid {holder.pid}, run id 'other-run'"):
            DataFolderLock(tmp_path).acquire(0)

        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)

        taken = DataFolderLock(tmp_path).acquire(0)  # the kernel dropped the lock with the process
        assert taken.held
        taken.release()
    finally:
        holder.kill()
        holder.wait(timeout=10)


def _make_directory(path: Path) -> None:
    path.mkdir()
    (path / "inside").write_text("evidence")


def _make_dangling_symlink(path: Path) -> None:
    path.symlink_to(path.with_name("nowhere"))


def _make_symlink_loop(path: Path) -> None:
    path.symlink_to(path)


def _make_fifo(path: Path) -> None:
    os.mkfifo(path)


@pytest.mark.parametrize("plant", [_make_directory, _make_dangling_symlink, _make_symlink_loop, _make_fifo])
def test_a_lock_file_that_is_not_a_regular_file_is_moved_aside_and_replaced(tmp_path, plant):
    (tmp_path / "system").mkdir()
    path = tmp_path / "system" / LOCK_NAME
    plant(path)

    lock = DataFolderLock(tmp_path).acquire(0)

    assert lock.held and lock.moved_aside is not None
    assert os.path.lexists(lock.moved_aside) and lock.moved_aside.name.startswith(f"{LOCK_NAME}.unusable-")
    assert path.is_file() and not path.is_symlink()
    with pytest.raises(DataFolderBusy):  # the fresh file locks like any other
        DataFolderLock(tmp_path).acquire(0)
    lock.release()


@pytest.mark.parametrize("plant", [lambda p: p.write_text("a file"), _make_dangling_symlink, _make_symlink_loop])
def test_a_file_where_the_system_folder_belongs_is_moved_aside_and_the_folder_made(tmp_path, plant):
    plant(tmp_path / "system")

    lock = DataFolderLock(tmp_path).acquire(0)

    assert lock.held and lock.moved_aside is not None and lock.moved_aside.name.startswith("system.unusable-")
    assert (tmp_path / "system").is_dir() and (tmp_path / "system" / LOCK_NAME).is_file()
    lock.release()


def _fake_time():
    now, sleeps = [0.0], []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    return now, sleeps, sleep


def test_a_lock_file_the_disk_refuses_is_tried_again_within_the_wait_then_refused_saying_why(tmp_path):
    data = tmp_path / "data"
    data.write_text("")  # under a regular file nothing can be made: as on a full disk, every try fails
    now, sleeps, sleep = _fake_time()

    with pytest.raises(DataFolderUnusable) as refused:
        DataFolderLock(data, clock=lambda: now[0], sleep=sleep).acquire(3.0)

    assert 3 <= len(sleeps) <= 4  # every second for the 3 s asked, then gave up
    message = str(refused.value)
    assert f"cannot hold its lock file {data / 'system' / LOCK_NAME}: Not a directory; waited 3 s" in message
    assert "Make room" in message


def test_a_lock_file_the_disk_takes_again_within_the_wait_is_held(tmp_path):
    data = tmp_path / "data"
    data.write_text("")
    now, sleeps, sleep = _fake_time()

    def room_back(seconds: float) -> None:
        sleep(seconds)
        if len(sleeps) == 2:
            data.unlink()  # the cause goes: the next try makes the folder and its lock file

    lock = DataFolderLock(data, clock=lambda: now[0], sleep=room_back).acquire(20.0)

    assert lock.held and len(sleeps) == 2
    lock.release()


def test_a_lock_file_pointing_elsewhere_is_never_followed(tmp_path):
    (tmp_path / "system").mkdir()
    target = tmp_path / "precious.txt"
    target.write_text("not the lock's")
    (tmp_path / "system" / LOCK_NAME).symlink_to(target)

    DataFolderLock(tmp_path, run_id="r").acquire(0).release()

    assert target.read_text() == "not the lock's"


@pytest.mark.parametrize("garbage", [b"", b"not json", b"[" * 100_000, b'{"pid": "x"}', b"[1, 2]",
                                     b'{"pid": 1, "since": "' + b"z" * 10_000 + b'"}'])
def test_a_holder_record_that_cannot_be_read_still_gives_a_clear_refusal(tmp_path, held, garbage):
    (tmp_path / "system" / LOCK_NAME).write_bytes(garbage)  # another tool wrote over the holder's record

    with pytest.raises(DataFolderBusy) as refused:
        DataFolderLock(tmp_path).acquire(0)

    message = str(refused.value)
    assert "in use by another trader" in message and len(message) < 400


@pytest.mark.parametrize("flag", [-1.0, float("nan"), float("inf"), 3600.5])
def test_run_trader_refuses_a_folder_wait_without_a_bound(flag):
    from django.core.management import CommandError

    from trading.management.commands.run_trader import folder_wait_s

    with pytest.raises(CommandError, match="--folder-wait must be within 0..3600 s"):
        folder_wait_s(flag)
    assert folder_wait_s(0.0) == 0.0 and folder_wait_s(20.0) == 20.0
