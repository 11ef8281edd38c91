"""The simulator's exchange truth on disk: one JSON file, written atomically and private (0600)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import msgspec

from failover.domain import files

STATE_VERSION = 1
MAX_STATE_BYTES = 64 * 1024 * 1024  # a full book of remembered orders and executions is a few MB


def write_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON so a crash leaves either the old file or the new one, never half of one; the file is 0600."""
    files.atomic_write_bytes(path, msgspec.json.encode(data))


def state_bytes(engine_state: dict[str, Any], journal: dict[str, Any] | None = None, wal_lsn: int = 0) -> bytes:
    """Return the state file's content: the engine's state (and the journal's seq and order creators) with a
    version, a timestamp and the last change of the change log it holds (``walLsn``)."""
    data: dict[str, Any] = {"version": STATE_VERSION, "savedAt": int(time.time() * 1000), "engine": engine_state,
                            "walLsn": wal_lsn}
    if journal is not None:
        data["journal"] = journal
    return msgspec.json.encode(data)


def save_state(path: Path, engine_state: dict[str, Any], journal: dict[str, Any] | None = None) -> None:
    """Persist the engine's state (and the journal's seq and order creators) with a version and a timestamp."""
    files.atomic_write_bytes(path, state_bytes(engine_state, journal))


def saved_wal_lsn(data: dict[str, Any]) -> int:
    """Return the last change-log number a loaded state file says it holds (0 for a file from before the log)."""
    lsn = data.get("walLsn")
    return lsn if isinstance(lsn, int) and not isinstance(lsn, bool) and lsn > 0 else 0


def load_state(
    path: Path,
    restore: Callable[[dict[str, Any]], None] | None = None,
    restore_journal: Callable[[Any], None] | None = None,
    restore_lsn: Callable[[int], None] | None = None,
) -> dict[str, Any] | None:
    """Return the saved engine state (after ``restore`` accepted it), or None when there is none.

    ``restore_journal`` is then given the saved ``journal`` section as it is
    (None when absent): it must take what it can use and ignore the rest;
    ``restore_lsn`` the last change-log number the file holds.

    Anything wrong with the file is bad input, never a crash: unreadable, a
    directory or a symlink loop in its place, over ``MAX_STATE_BYTES`` (64 MiB),
    not JSON (numbers past the 4,300-digit limit and deep nesting included), a
    version or shape this simulator does not know, or an engine state
    ``restore`` refuses (whatever it raises). The file is then moved aside
    (never deleted) and ``CorruptStateError`` raised; the caller starts the
    exchange clean, as a real exchange would not, but a simulator must keep going.
    The existing file is made 0600 first: it may come from an older version.
    """
    try:
        files.secure_file(path)
        raw = files.read_bounded(path, MAX_STATE_BYTES)
    except FileNotFoundError:
        return None
    except Exception as exc:
        _refuse(path, f"unreadable: {files.describe_error(exc)}", exc)
    try:
        data = json.loads(raw.decode("utf-8"))
        known = isinstance(data, dict) and data.get("version") == STATE_VERSION and isinstance(data.get("engine"), dict)
        if not known:
            raise ValueError(f"not a version {STATE_VERSION} exchange state")
        if restore is not None:
            restore(data["engine"])
    except Exception as exc:
        _refuse(path, files.describe_error(exc), exc)
    if restore_journal is not None:
        restore_journal(data.get("journal"))
    if restore_lsn is not None:
        restore_lsn(saved_wal_lsn(data))
    engine: dict[str, Any] = data["engine"]
    return engine


def _refuse(path: Path, problem: str, exc: BaseException) -> NoReturn:
    aside = files.move_aside(path, datetime.now(UTC))
    raise CorruptStateError(f"state file {path} unreadable ({problem}); moved to {aside}") from exc


class CorruptStateError(Exception):
    """The state file could not be read; it was moved aside."""
