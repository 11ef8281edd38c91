"""Crash-safe file primitives: atomic replace, and moving a bad file aside without ever deleting it."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

TEMP_SUFFIX = ".tmp"


def temp_prefix(path: Path) -> str:
    """Return the name prefix of the temp files ``atomic_write_text`` makes for ``path`` (hidden, same folder)."""
    return f".{path.name}."


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so a reader or a crash sees either the old file or the new one, complete.

    The temp file is in the same folder because ``os.replace`` is only atomic
    within one file system; the file is fsynced before the rename so the new name
    never points at unwritten blocks, and the folder after it so the rename
    itself survives a power cut.
    """
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=temp_prefix(path), suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        # The old file is untouched; do not leave the half-written copy behind.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    fsync_folder(folder)


def atomic_write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON through ``atomic_write_text``."""
    # allow_nan=False: NaN is not JSON, and the readers here would refuse it as corrupt.
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (renames, new names) to disk; a no-op where folders cannot be opened."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(folder, flags)
    except OSError:  # Windows cannot open a folder; its rename durability is the file system's business
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def move_aside(path: Path, at: datetime, *, label: str = "corrupt") -> Path:
    """Rename ``path`` to ``<name>.<label>-<UTC timestamp>`` (``-1``, ``-2``... if taken) and return the new path.

    The evidence is never deleted or overwritten: the new name is claimed with a
    hard link, which fails if the name exists, and only then is the old name
    removed.
    """
    stamp = at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = f"{path.name}.{label}-{stamp}"
    for n in itertools.count():
        target = path.with_name(base if n == 0 else f"{base}-{n}")
        try:
            os.link(path, target)
        except FileExistsError:
            continue
        except OSError:
            if path.exists() and not target.exists():
                # A file system without hard links: a checked rename is the best left.
                os.rename(path, target)
                fsync_folder(path.parent)
                return target
            raise
        os.unlink(path)
        fsync_folder(path.parent)
        return target
    raise AssertionError("unreachable")  # itertools.count() never ends
