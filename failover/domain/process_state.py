"""The process's black box: ``process_state.json`` written atomically, and what a start makes of it.

Corruption is reported by raising ``ProcessStateCorrupt`` (not by returning
None): a None from ``load()`` always means "first start", and a corrupt file is
an event the caller must act on (``exc.failure_event(at)`` is the
DATA_CORRUPTION event to report; recovery then proceeds from exchange truth).
The bad file has already been moved aside to ``exc.moved_to`` when the
exception is raised, so the next ``load()`` returns None.

Bad means anything but a valid state: an unreadable file, a directory or a
symlink loop in its place, a file over ``MAX_STATE_BYTES`` (8 MiB; a real one
holds a few open orders and positions), text that is not UTF-8 JSON (including
numbers past Python's 4,300-digit limit and nesting too deep to parse), the
wrong shape, or a pid no process can have (outside 1..``PID_MAX``). A start must
never die on what an earlier run, a disk error or a person left in this file.
"""

from __future__ import annotations

import errno
import json
import os
import threading
from dataclasses import fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from failover.domain._codec import SchemaError, format_ts
from failover.domain.clock import Clock, SystemClock
from failover.domain.files import (
    TEMP_SUFFIX,
    Midway,
    atomic_write_json,
    describe_error,
    move_aside,
    read_bounded,
    temp_prefix,
)
from failover.domain.types import FailureEvent, FailureSource, FailureType, Phase, ProcessState

_FIELDS = frozenset(f.name for f in fields(ProcessState))
_GRACEFUL_PHASES = frozenset({Phase.STOPPING, Phase.IDLE})
MAX_STATE_BYTES = 8 * 1024 * 1024
PID_MAX = 2**31 - 1  # pid_t is a C int: a larger pid was never a process, and os.kill would overflow on it


class BadProcessState(ValueError):
    """A process state file exists but is not a valid state; the message says why."""


def read_process_state(path: str | os.PathLike[str]) -> ProcessState | None:
    """Return the state in ``path``, None if there is no file; raise ``BadProcessState`` for anything else.

    No side effects: the file stays where it is (``ProcessStateStore.load`` moves a bad one aside).
    """
    try:
        raw = read_bounded(path, MAX_STATE_BYTES)
    except FileNotFoundError:
        return None
    except Exception as exc:  # a directory, a symlink loop, an I/O error: bad input, whatever the cause
        raise BadProcessState(f"unreadable: {describe_error(exc)}") from exc
    return parse_process_state(raw)


def parse_process_state(raw: bytes) -> ProcessState:
    """Decode and validate the bytes of a process state file; raise ``BadProcessState`` saying what is wrong."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BadProcessState(f"not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    except json.JSONDecodeError as exc:
        raise BadProcessState(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except Exception as exc:  # ValueError past the int digit limit, RecursionError, MemoryError
        raise BadProcessState(f"invalid JSON: {describe_error(exc)}") from exc
    try:
        state = ProcessState.from_dict(data)
    except SchemaError as exc:  # names the field
        raise BadProcessState(f"invalid process state: {str(exc)[:500]}") from exc
    except Exception as exc:  # a shape the checks did not foresee is as bad
        raise BadProcessState(f"invalid process state: {describe_error(exc, 500)}") from exc
    if not 1 <= state.pid <= PID_MAX:
        raise BadProcessState(f"invalid process state: pid {state.pid} is outside 1..{PID_MAX}")
    return state


class ProcessStateCorrupt(Exception):
    """``process_state.json`` did not parse or validate; it was moved to ``moved_to``."""

    def __init__(self, path: Path, moved_to: Path, error: str) -> None:
        self.path = path
        self.moved_to = moved_to
        self.error = error
        super().__init__(f"{path.name} is corrupt ({error}); moved aside to {moved_to.name}")

    def failure_event(self, at: datetime) -> FailureEvent:
        """Return the DATA_CORRUPTION event the caller reports."""
        return FailureEvent(
            timestamp=at,
            type=FailureType.DATA_CORRUPTION,
            source=FailureSource.PROCESS_STATE_STORE,
            message=f"{self.path.name} is corrupt; recovering from exchange truth",
            details={"file": self.path.name, "movedTo": self.moved_to.name, "error": self.error},
        )


class ProcessStateMissing(RuntimeError):
    """``update()`` was called before any state was saved or loaded."""


class ProcessStateStore:
    """Load, save and update one ``process_state.json``; safe to call from several threads.

    ``save`` writes the state exactly as given; ``update`` applies snake_case
    fields to the last saved or loaded state and stamps ``last_update`` from the
    clock. The lock covers the file write too, so the file on disk always holds
    the newest state in memory. A write that fails (a full disk) raises its
    ``OSError`` and leaves memory as the disk is; ``failing`` says why until a
    write succeeds again, and ``keep`` makes a state the base of later updates
    without writing it (a start that must go on without its file).
    """

    def __init__(
        self, path: str | os.PathLike[str], clock: Clock | None = None, *, midway: Midway | None = None
    ) -> None:
        self._path = Path(path)
        self._midway = midway  # a crash test's hook inside each write (``files.atomic_write_bytes``)
        self._clock: Clock = SystemClock() if clock is None else clock
        self._lock = threading.RLock()
        self._current: ProcessState | None = None
        self.failing: str | None = None  # why the last write failed, while the file lags the state in memory

    @property
    def path(self) -> Path:
        return self._path

    @property
    def current(self) -> ProcessState | None:
        """Return the last state saved or loaded by this store, without reading the disk."""
        return self._current

    def load(self) -> ProcessState | None:
        """Return the stored state, None if there is no file; raise ``ProcessStateCorrupt`` for a bad one."""
        with self._lock:
            self._current = None
            try:
                state = read_process_state(self._path)
            except BadProcessState as exc:
                moved_to = move_aside(self._path, self._clock.now())
                raise ProcessStateCorrupt(self._path, moved_to, str(exc)) from exc
            self._current = state
            return state

    def save(self, state: ProcessState) -> None:
        """Write ``state`` atomically and make it the base of later updates."""
        if not isinstance(state, ProcessState):
            raise TypeError(f"expected ProcessState, got {type(state).__name__}")
        with self._lock:
            try:
                atomic_write_json(self._path, state.to_dict(), midway=self._midway)
            except OSError as exc:
                self.failing = f"{type(exc).__name__}: {exc}"
                raise
            self._current = state
            self.failing = None

    def keep(self, state: ProcessState) -> None:
        """Make ``state`` the base of later updates without writing it: its write was refused (see ``failing``)."""
        with self._lock:
            self._current = state

    def update(self, **partial: Any) -> ProcessState:
        """Apply snake_case fields (``phase=Phase.RUNNING``, ``open_orders_snapshot=[...]``), save, return the state."""
        unknown = set(partial) - _FIELDS
        if unknown:
            raise TypeError(f"unknown ProcessState fields {sorted(unknown)}; expected some of {sorted(_FIELDS)}")
        with self._lock:
            if self._current is None:
                raise ProcessStateMissing("save() or load() a ProcessState before update()")
            partial.setdefault("last_update", self._clock.now())
            state = replace(self._current, **partial)  # re-runs every check of ProcessState
            self.save(state)
            return state

    def stale_temp_files(self) -> list[Path]:
        """Return temp files a killed writer left behind (they are incomplete and never read)."""
        prefix = temp_prefix(self._path)
        folder = self._path.parent
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.name.startswith(prefix) and p.name.endswith(TEMP_SUFFIX))

    def remove_stale_temp_files(self) -> list[Path]:
        """Delete leftover temp files; call only once no other trader can be writing (after the start verdict)."""
        removed = []
        with self._lock:
            for temp in self.stale_temp_files():
                try:
                    temp.unlink()
                except FileNotFoundError:
                    continue
                removed.append(temp)
        return removed


def os_pid_alive(pid: int) -> bool:
    """Return whether a process with ``pid`` exists on this machine (signal 0 probes without signalling)."""
    if isinstance(pid, bool) or not isinstance(pid, int) or not 1 <= pid <= PID_MAX:
        return False  # never a process; and os.kill raises OverflowError past a C int, or signals a group at <= 0
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            return False
        raise
    return True


def classify_previous_run(previous: ProcessState | None) -> FailureType | None:
    """Decide what the previous run's state file says about how it ended.

    - no file: None, a first start;
    - phase STOPPING or IDLE: PROCESS_RESTART, the previous run shut down gracefully;
    - phase STARTING, RUNNING or RECOVERING: UNEXPECTED_SHUTDOWN, it died mid-flight.

    The pid in the file decides nothing: whether another trader may act on the
    account is the account lease's to say (``trading.exchange.lease``), so a
    stale pid, or one reused after a reboot, never blocks a start.
    """
    if previous is None:
        return None
    if previous.phase in _GRACEFUL_PHASES:
        return FailureType.PROCESS_RESTART
    return FailureType.UNEXPECTED_SHUTDOWN


def startup_failure_event(previous: ProcessState, verdict: FailureType, *, at: datetime) -> FailureEvent:
    """Return the PROCESS_RESTART or UNEXPECTED_SHUTDOWN event for ``verdict``, with the previous run as evidence."""
    if verdict not in (FailureType.PROCESS_RESTART, FailureType.UNEXPECTED_SHUTDOWN):
        raise ValueError(f"not a start verdict: {verdict}")
    how = "stopped gracefully" if verdict is FailureType.PROCESS_RESTART else (
        f"stopped without a graceful shutdown (phase {previous.phase.value})"
    )
    return FailureEvent(
        timestamp=at,
        type=verdict,
        source=FailureSource.PROCESS_STATE_STORE,
        message=f"Previous trader (pid {previous.pid}) {how}",
        details={
            "previousPid": previous.pid,
            "previousPhase": previous.phase.value,
            "previousLastUpdate": format_ts(previous.last_update),
            "openPositions": len(previous.open_positions_snapshot),
            "openOrders": len(previous.open_orders_snapshot),
        },
    )
