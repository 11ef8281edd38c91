"""Append-only event log: ``data/events/<symbol>.jsonl``, one JSON object a line.

Signals, state changes, order requests and updates, fills and resyncs go here,
so an operator can read what the trader did and why, symbol by symbol. Lines are
written whole (one ``write`` call each) so a crash never leaves half an object
that would corrupt the rest of the file; a reader skips at most a torn last line.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

_SAFE_NAME = re.compile(r"^[A-Z0-9_]{1,40}$")
SYSTEM = "_SYSTEM"  # events not about one symbol


def _iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _default(value: Any) -> Any:
    # Decimals and other exact numbers are written as strings, never rounded floats.
    return str(value)


class EventLog:
    """Write events per symbol under ``folder``; thread-safe; flushes every line."""

    def __init__(self, folder: Path, *, clock_ms: Callable[[], int], run_id: str = "") -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._clock_ms = clock_ms
        self._run_id = run_id
        self._files: dict[str, TextIO] = {}
        self._lock = threading.Lock()

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
            handle = self._files.get(symbol)
            if handle is None:
                handle = open(self.path_for(symbol), "a", encoding="utf-8")  # noqa: SIM115 (kept open)
                self._files[symbol] = handle
            handle.write(line)
            handle.flush()
        return record

    def sync(self) -> None:
        """Force written lines to disk (before a graceful stop)."""
        with self._lock:
            for handle in self._files.values():
                handle.flush()
                os.fsync(handle.fileno())

    def close(self) -> None:
        with self._lock:
            for handle in self._files.values():
                handle.close()
            self._files.clear()


def read_events(path: Path) -> Iterator[dict[str, Any]]:
    """Read an event file, skipping a torn last line left by a crash."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                return
            yield json.loads(line)
