"""One trader per data folder: an exclusive lock on ``system/trader.lock``, held for the process's life.

Two traders on one folder would read and overwrite each other's process state,
event logs and recovery evidence: the second would take the first's live state
for a crashed run, and after a kill -9 the first would restart from the
second's record. The lease keeps them from both sending orders; this lock
keeps them from sharing a folder at all.

The lock is ``flock`` on an open file, so the kernel drops it when the process
ends however it ends (kill -9 included): no stale lock is ever left to clear.
The holder writes its pid, run id and start time into the file, so a trader
refused names the one in its way. The file is never deleted (unlinking a lock
file lets two processes each lock a different inode). A lock file that is not a
regular file (a directory, a symlink, a FIFO planted in its place) is moved
aside as evidence and a fresh one made, as every bad file of the folder is.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from failover.domain.files import PRIVATE_FILE, move_aside, secure_folder

LOCK_NAME = "trader.lock"
POLL_S = 0.1
HOLDER_LIMIT = 4096  # bytes of the holder's record read for the refusal message


class DataFolderRefused(RuntimeError):
    """The data folder cannot be held: nothing of it was read or written."""


class DataFolderBusy(DataFolderRefused):
    """Another live process holds the data folder's lock."""

    def __init__(self, path: Path, holder: str, waited_s: float) -> None:
        self.path = path
        self.holder = holder
        super().__init__(
            f"the data folder is in use by another trader ({holder}); waited {waited_s:.0f} s for {path}. "
            "Each trader needs a data folder of its own: stop the other one or give this one --data-dir"
        )


class DataFolderUnusable(DataFolderRefused):
    """The lock file could not be made or opened for as long as the trader waited (a full disk, no inodes left, a
    read-only mount): without its lock a trader cannot know it is alone on the folder, so it does not start."""

    def __init__(self, path: Path, error: OSError, waited_s: float) -> None:
        self.path = path
        self.error = error
        super().__init__(
            f"the data folder cannot hold its lock file {path}: {error.strerror or error}; waited {waited_s:.0f} s. "
            "Make room on its disk (or fix its mount); a supervisor that starts the trader again then succeeds"
        )


class DataFolderLock:
    """The exclusive lock of one data folder; ``acquire`` then ``release`` (or the process's end)."""

    def __init__(self, data_dir: Path, *, run_id: str = "", clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.path = Path(data_dir) / "system" / LOCK_NAME
        self.run_id = run_id
        self.moved_aside: Path | None = None  # where an unusable lock file went, when one was found
        self._clock, self._sleep = clock, sleep
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, wait_s: float) -> DataFolderLock:
        """Take the lock, waiting up to ``wait_s`` for a holder to stop; raise ``DataFolderBusy`` if it does not.

        A lock file the disk refuses to make is tried again within the same wait: ``DataFolderUnusable`` after it.
        """
        deadline = self._clock() + wait_s
        fd = self._open_waiting(deadline, wait_s)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if self._clock() >= deadline:
                        raise DataFolderBusy(self.path, _holder(fd), wait_s) from None
                    self._sleep(POLL_S)
            self._write_holder(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock back (closing the file drops it); the file stays for the next holder."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _open_waiting(self, deadline: float, wait_s: float) -> int:
        """Make the folder and open the lock file, trying again until ``deadline`` while the disk refuses."""
        folder = self.path.parent
        while True:
            try:
                if not folder.is_dir() and (folder.exists() or folder.is_symlink()):  # a file planted in its place
                    self.moved_aside = move_aside(folder, datetime.now(UTC), label="unusable")
                secure_folder(folder)
                return self._open()
            except OSError as exc:
                if self._clock() >= deadline:
                    raise DataFolderUnusable(self.path, exc, wait_s) from exc
                self._sleep(POLL_S * 10)

    def _open(self) -> int:
        """Open the lock file (never through a symlink), moving an unusable one aside first."""
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, PRIVATE_FILE)
        except OSError:  # a directory, a symlink (ELOOP with O_NOFOLLOW), a FIFO without a reader...
            return self._replace_bad()
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO with a reader, a device
            os.close(fd)
            return self._replace_bad()
        return fd

    def _replace_bad(self) -> int:
        self.moved_aside = move_aside(self.path, datetime.now(UTC), label="unusable")
        return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE_FILE)

    def _write_holder(self, fd: int) -> None:
        """Leave who holds the lock, for the message of a trader refused; best effort (a full disk refuses it)."""
        record = {"pid": os.getpid(), "runId": self.run_id, "since": datetime.now(UTC).isoformat()}
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode(), 0)


def _holder(fd: int) -> str:
    """Describe the holder from its record: best effort, the record is only for the message."""
    try:
        raw = os.pread(fd, HOLDER_LIMIT, 0)
        record = json.loads(raw)
        return (f"pid {int(record['pid'])}, run id {str(record.get('runId', ''))[:80]!r}, "
                f"since {str(record['since'])[:40]}")
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return "a process that left no readable record"
