"""The simulator's exchange truth on disk: one JSON file, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

STATE_VERSION = 1


def write_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON so a crash leaves either the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, separators=(",", ":"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # The rename is durable only once the folder itself is synced.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_state(path: Path, engine_state: dict[str, Any]) -> None:
    """Persist the engine's state with a version and a timestamp."""
    write_atomic(path, {"version": STATE_VERSION, "savedAt": int(time.time() * 1000), "engine": engine_state})


def load_state(path: Path) -> dict[str, Any] | None:
    """Return the saved engine state, or None when there is none.

    A file that does not parse is moved aside (never deleted) and the exchange
    starts clean, as a real exchange would not, but a simulator must keep going.
    """
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != STATE_VERSION or not isinstance(data.get("engine"), dict):
            raise ValueError(f"unsupported state version {data.get('version')!r}")
        return data["engine"]
    except (ValueError, OSError) as exc:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        os.replace(path, aside)
        raise CorruptStateError(f"state file {path} unreadable ({exc}); moved to {aside}") from exc


class CorruptStateError(Exception):
    """The state file could not be read; it was moved aside."""
