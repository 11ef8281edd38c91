"""Append-only event log: ``data/events/<symbol>.jsonl``, one JSON object a line.

Signals, state changes, order requests and updates, fills and resyncs go here,
so an operator can read what the trader did and why, symbol by symbol. Lines are
written whole (one ``write`` call each) so a crash never leaves half an object
that would corrupt the rest of the file; a reader skips at most a torn last line.

The log is the audit trail, not the trader's memory (order intents are in the
database), so a write that fails (a full disk, a file turned unwritable) never
raises into the trader: the line is counted as lost, the file is marked failing
(``failing``), and its next write first ends the torn line a failed write may
have left. ``retry_failing`` writes an ``EVENT_LOG_RESUMED`` line (how many were
lost) to each failing file; the trader calls it while any is failing and counts
each refusal as a crash of the module ``EVENT_LOG``, so safe mode holds while
the audit trail cannot be written and ends once it can.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import stat
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from failover.domain.files import move_aside

_SAFE_NAME = re.compile(r"^[A-Z0-9_]{1,40}$")
SYSTEM = "_SYSTEM"  # events not about one symbol
RESUMED = "EVENT_LOG_RESUMED"  # the first line a failing file takes again, with how many were lost

logger = logging.getLogger(__name__)


def _iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _default(value: Any) -> Any:
    # Decimals and other exact numbers are written as strings, never rounded floats.
    return str(value)


class EventLog:
    """Write events per symbol under ``folder``; thread-safe; flushes every line."""

    def __init__(self, folder: Path, *, clock_ms: Callable[[], int], run_id: str = "") -> None:
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a full disk at start: made at a write once it can be, lines lost till then
            logger.error("event log folder %s cannot be made (%s): made at the first write that can", folder, exc)
        self._clock_ms = clock_ms
        self._run_id = run_id
        self._files: dict[str, TextIO] = {}
        self._lock = threading.Lock()
        self._failing: dict[str, OSError] = {}  # symbol -> the error of its last write, while it fails
        self._failing_since_ms: dict[str, int] = {}
        self.lost = 0  # lines not written, since the log was made

    @property
    def failing(self) -> dict[str, str]:
        """The files whose last write failed, by symbol, with why; empty when every write went through."""
        with self._lock:
            return {symbol: f"{type(exc).__name__}: {exc}" for symbol, exc in self._failing.items()}

    def path_for(self, symbol: str) -> Path:
        if not _SAFE_NAME.match(symbol):
            raise ValueError(f"not a symbol name: {symbol!r}")
        return self.folder / f"{symbol}.jsonl"

    def write(self, symbol: str, event: str, **fields: Any) -> dict[str, Any]:
        """Append one event and return it as written."""
        ts_ms = self._clock_ms()
        record = {"ts": _iso(ts_ms), "tsMs": ts_ms, "symbol": symbol, "event": event, **fields}
        if self._run_id:
            record["runId"] = self._run_id
        line = json.dumps(record, default=_default, separators=(",", ":")) + "\n"
        with self._lock:
            self._append(symbol, line)
        return record

    def retry_failing(self) -> bool:
        """Write ``EVENT_LOG_RESUMED`` to each failing file (what was lost, since when); True once none fails."""
        with self._lock:
            failing = {symbol: self._failing_since_ms[symbol] for symbol in self._failing}
        for symbol, since_ms in failing.items():
            self.write(symbol, RESUMED, lost=self.lost, failingSince=_iso(since_ms))
        with self._lock:
            return not self._failing

    def _append(self, symbol: str, line: str) -> None:
        """Write one line under the lock; a failure is counted and remembered, never raised."""
        try:
            handle = self._files.get(symbol)
            if handle is None:
                handle = self._open(symbol)
            handle.write(line)
            handle.flush()
        except OSError as exc:
            self._failed(symbol, exc)
            return
        if symbol in self._failing:
            del self._failing[symbol], self._failing_since_ms[symbol]
            logger.warning("event log %s written again (%d lines lost in all)", symbol, self.lost)

    def _open(self, symbol: str) -> TextIO:
        """Open a file to append; after a failed write, end the torn line it may have left first.

        Never blocks (a FIFO planted in a file's place would hold the trader at its first write): a directory,
        a FIFO or a symlink loop is moved aside as evidence and a fresh file made. A symlink to a file or a
        device is followed: an operator may keep the logs elsewhere.
        """
        path = self.path_for(symbol)
        try:
            fd = _open_append(path)
        except FileNotFoundError:  # the folder is gone, or could not be made at start (a full disk)
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = _open_append(path)
        except OSError as exc:
            if exc.errno not in _NOT_A_FILE:
                raise
            fd = self._replace(path)
        mode = os.fstat(fd).st_mode
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):  # a FIFO with a reader; a device is written as it is
            os.close(fd)
            fd = self._replace(path)
        handle = os.fdopen(fd, "a", encoding="utf-8")
        self._files[symbol] = handle
        if symbol in self._failing and not _ends_a_line(path):
            handle.write("\n")
        return handle

    def _replace(self, path: Path) -> int:
        moved = move_aside(path, datetime.fromtimestamp(self._clock_ms() / 1000, tz=UTC), label="unusable")
        logger.error("event log %s was not a regular file: moved aside to %s", path.name, moved.name)
        return _open_append(path, exclusive=True)

    def _failed(self, symbol: str, exc: OSError) -> None:
        handle = self._files.pop(symbol, None)
        if handle is not None:
            with contextlib.suppress(OSError):  # closing flushes what is buffered, which fails the same way
                handle.close()
        self.lost += 1
        if symbol not in self._failing:
            self._failing_since_ms[symbol] = self._clock_ms()
            logger.error("event log %s cannot be written (%s): lines are lost until it can", symbol, exc)
        self._failing[symbol] = exc

    def sync(self) -> None:
        """Force written lines to disk (before a graceful stop); a file that cannot be synced is marked failing."""
        with self._lock:
            for symbol, handle in list(self._files.items()):
                try:
                    handle.flush()
                    os.fsync(handle.fileno())
                except OSError as exc:
                    self._failed(symbol, exc)

    def close(self) -> None:
        with self._lock:
            for handle in self._files.values():
                with contextlib.suppress(OSError):
                    handle.close()
            self._files.clear()


# What opening something that is not a regular file fails with: a directory, a FIFO with no reader, a loop.
_NOT_A_FILE = frozenset({errno.EISDIR, errno.ENXIO, errno.ELOOP, errno.ENOTDIR})


def _open_append(path: Path, *, exclusive: bool = False) -> int:
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_EXCL if exclusive else 0)
    return os.open(path, flags, 0o666)


def _ends_a_line(path: Path) -> bool:
    """Whether the file is empty or ends with a newline (False also when it cannot be read)."""
    try:
        with open(path, "rb") as handle:
            if handle.seek(0, os.SEEK_END) == 0:
                return True
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"
    except OSError:
        return False


def read_events(path: Path) -> Iterator[dict[str, Any]]:
    """Read an event file, skipping a torn last line left by a crash and a line a failed write tore."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.endswith("\n"):
                return
            try:
                event = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(event, dict):
                yield event
