"""The exchange history on disk: one JSON record a line, appended, rotated once, a torn tail cut off.

``exchange_history.jsonl`` sits next to the state file and only the simulator's
loop thread appends to it, in ``seq`` order, every line ending in a newline.
Appends are written and flushed to the operating system with the state write,
never fsynced on their own: a killed simulator loses nothing already written,
a power cut may lose the last records (``seq`` is still never reused: it is kept
in the state file as well).

A simulator killed mid-write leaves a torn last line. Readers skip any line that
is not a whole record; the next start cuts the torn tail off before appending
(an append after it would glue the next record to it).

Bounded: once the file holds ``MAX_FILE_BYTES`` it becomes ``<name>.1``
(replacing the older one) and a new file starts, so the live history is at most
two files of about that size. ``start_new`` moves both aside as
``exchange_history.previous.jsonl`` (and ``.1``), replacing the history before.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import IO, Any

from failover.domain import files

log = logging.getLogger(__name__)

HISTORY_FILE_NAME = "exchange_history.jsonl"
MAX_FILE_BYTES = 16 * 1024 * 1024  # about 35,000 records of 400-500 bytes; the live history keeps two files
_CHUNK = 64 * 1024
_SEQ_PREFIX = b'{"seq":'  # every record is written with seq as its first key


def history_path_for(state_path: Path) -> Path:
    """Return where a simulator keeping its state in ``state_path`` keeps its history (same folder)."""
    return state_path.with_name(HISTORY_FILE_NAME)


def rotated_path(path: Path) -> Path:
    """Return the older half of the history at ``path``."""
    return path.with_name(path.name + ".1")


def previous_path(path: Path) -> Path:
    """Return where the history at ``path`` is moved when a new one starts (``--reset``)."""
    return path.with_name(f"{path.stem}.previous{path.suffix}")


def parse_record(line: bytes) -> dict[str, Any] | None:
    """Return the record on ``line``; None for a torn or foreign line."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    if not isinstance(record, dict):
        return None
    seq = record.get("seq")
    return record if isinstance(seq, int) and not isinstance(seq, bool) else None


def _seq_of(line: bytes) -> int | None:
    """Read the seq of a line without parsing the whole record (None when it does not start like one)."""
    if not line.startswith(_SEQ_PREFIX):
        return None
    end = line.find(b",", len(_SEQ_PREFIX))
    try:
        return int(line[len(_SEQ_PREFIX):end])
    except ValueError:
        return None


def iter_history(path: Path, after: int = 0) -> Iterator[dict[str, Any]]:
    """Yield the records of the history at ``path`` with seq above ``after``, its rotated half first.

    For reading a history offline as well: lines that are not whole records
    (a torn last line, foreign bytes) are skipped, an unreadable file is logged
    and skipped.
    """
    for part in (rotated_path(path), path):
        try:
            handle = part.open("rb")
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.error("simexchange: cannot read the history file %s: %s", part, files.describe_error(exc))
            continue
        with handle:
            for line in handle:
                seq = _seq_of(line)
                if seq is None or seq <= after:
                    continue
                record = parse_record(line)
                if record is not None:
                    yield record


def _last_newline_end(handle: IO[bytes], size: int) -> int:
    """Return the offset just past the last newline of the file (0 when it has none)."""
    end = size
    while end > 0:
        start = max(0, end - _CHUNK)
        handle.seek(start)
        found = handle.read(end - start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        end = start
    return 0


def _max_seq(part: Path) -> int:
    """Return the highest seq on the lines of ``part`` (0 when none): never below one already used."""
    try:
        handle = part.open("rb")
    except FileNotFoundError:
        return 0
    with handle:
        return max((s for s in map(_seq_of, handle) if s is not None), default=0)


class HistoryFile:
    """The history file of one simulator: repaired at start, appended to, rotated, read back."""

    def __init__(self, path: Path, *, max_bytes: int = MAX_FILE_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._handle: IO[bytes] | None = None
        self._size = 0

    def recover(self) -> int:
        """Cut a torn last line off the file and return the last seq on disk (0 when there is none)."""
        self._cut_torn_tail()
        return _max_seq(self.path) or _max_seq(rotated_path(self.path))

    def _cut_torn_tail(self) -> None:
        try:
            handle = self.path.open("r+b")
        except FileNotFoundError:
            return
        with handle:
            size = handle.seek(0, os.SEEK_END)
            keep = _last_newline_end(handle, size)
            if keep < size:
                handle.truncate(keep)
                log.warning("simexchange: cut a torn last record (%s bytes) off %s", size - keep, self.path)

    def start_new(self) -> None:
        """Move the history (both halves) aside as the previous one; the next append starts a new file."""
        self.close()
        aside = previous_path(self.path)
        for part, target in ((self.path, aside), (rotated_path(self.path), rotated_path(aside))):
            if os.path.lexists(part):
                os.replace(part, target)
            elif os.path.lexists(target):
                os.unlink(target)  # a rotated half left from an older history does not belong to this one

    def append(self, lines: list[bytes]) -> None:
        """Write ``lines`` (each ending in a newline) and flush them to the operating system; no fsync."""
        if self._handle is None:
            self._open()
        if self._size >= self.max_bytes:
            self._rotate()
        assert self._handle is not None
        data = b"".join(lines)
        self._handle.write(data)
        self._handle.flush()
        self._size += len(data)

    def read(self, after: int, limit: int) -> list[dict[str, Any]]:
        """Return up to ``limit`` records with seq above ``after``, oldest first."""
        return list(islice(iter_history(self.path, after), limit))

    def close(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            handle.close()

    def _rotate(self) -> None:
        self.close()
        os.replace(self.path, rotated_path(self.path))
        self._open()

    def _open(self) -> None:
        try:
            handle = self._open_append()
        except OSError as exc:  # a directory, a symlink or a foreign file in its place: keep it as evidence
            aside = files.move_aside(self.path, datetime.now(UTC))
            log.error("simexchange: history file %s unusable (%s); moved to %s", self.path,
                      files.describe_error(exc), aside)
            handle = self._open_append()
        self._handle = handle
        self._size = os.fstat(handle.fileno()).st_size

    def _open_append(self) -> IO[bytes]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(self.path, flags, files.PRIVATE_FILE)
        try:
            files.secure_file(self.path)
            return os.fdopen(fd, "ab")
        except BaseException:
            os.close(fd)
            raise
