"""Crash-safe file primitives: atomic replace, bounded reads, private modes, and moving a bad file aside.

Files written here hold state or secrets, so they are created ``0600`` (owner
only) whatever the umask; ``secure_folder`` and ``secure_file`` fix the modes of
folders and files an older version or another tool left open.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import stat
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

TEMP_SUFFIX = ".tmp"
PRIVATE_FILE = 0o600
PRIVATE_FOLDER = 0o700


class FileRefused(ValueError):
    """A file that exists but is not read: not a regular file, or larger than the bound of its reader."""


def read_bounded(path: str | os.PathLike[str], limit: int) -> bytes:
    """Return the bytes of the regular file ``path``, refusing (``FileRefused``) one over ``limit`` bytes.

    ``FileNotFoundError`` (a missing file, a dangling symlink) passes through so a
    caller can tell "absent" from "bad"; every other ``OSError`` (a symlink loop,
    a permission error) passes through too. The file is opened non-blocking so a
    FIFO planted in its place cannot hang the reader, and its type is checked on
    the open descriptor: a directory, a FIFO or a device is refused, not read.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused(f"not a regular file ({_kind(info.st_mode)})")
        if info.st_size > limit:
            raise FileRefused(f"{info.st_size} bytes, over the bound of {limit}")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:  # the file may grow while it is read: stop one byte past the bound
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise FileRefused(f"over the bound of {limit} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return f"mode {mode:o}"


def describe_error(exc: BaseException, limit: int = 300) -> str:
    """Return a one-line account of why a file could not be read or parsed, at most ``limit`` characters."""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror  # without the path: the caller names the file
    elif isinstance(exc, RecursionError):
        text = "nested too deeply"
    elif isinstance(exc, FileRefused):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def temp_prefix(path: Path) -> str:
    """Return the name prefix of the temp files ``atomic_write_text`` makes for ``path`` (hidden, same folder)."""
    return f".{path.name}."


Midway = Callable[[], None]
"""Called with the temp file half written and flushed (a crash test dies there); never called by default."""


def atomic_write_text(path: Path, text: str, *, midway: Midway | None = None) -> None:
    """Replace ``path`` with ``text`` so a reader or a crash sees either the old file or the new one, complete.

    The temp file is in the same folder because ``os.replace`` is only atomic
    within one file system; the file is fsynced before the rename so the new name
    never points at unwritten blocks, and the folder after it so the rename
    itself survives a power cut. The file is created ``0600``: what is written
    here is state or a secret, never meant for other users.
    """
    atomic_write_bytes(path, text.encode("utf-8"), midway=midway)


def atomic_write_bytes(path: Path, data: bytes, *, midway: Midway | None = None) -> None:
    """Replace ``path`` with ``data`` atomically (see ``atomic_write_text``); the new file is ``0600``."""
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=temp_prefix(path), suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            # mkstemp already creates 0600; said again so the mode is this function's promise, not an accident.
            os.fchmod(handle.fileno(), PRIVATE_FILE)
            if midway is not None:
                half = len(data) // 2
                handle.write(data[:half])
                handle.flush()
                midway()
                data = data[half:]
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        # The old file is untouched; do not leave the half-written copy behind.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    fsync_folder(folder)


def _json_text(data: Any) -> str:
    # allow_nan=False: NaN is not JSON, and the readers here would refuse it as corrupt.
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def atomic_write_json(path: Path, data: Any, *, midway: Midway | None = None) -> None:
    """Write ``data`` as indented JSON through ``atomic_write_text``."""
    atomic_write_text(path, _json_text(data), midway=midway)


def atomic_write_json_if_changed(path: Path, data: Any) -> bool:
    """Write ``data`` as ``atomic_write_json`` does unless the file already holds exactly it; True if written.

    Every file here is written whole and fsynced before its rename, so a file that reads back the same bytes
    is already durable: the two fsyncs of a rewrite would buy nothing.
    """
    encoded = _json_text(data).encode("utf-8")
    try:
        if path.read_bytes() == encoded:
            return False
    except OSError:  # missing or unreadable: write it
        pass
    atomic_write_bytes(path, encoded)
    return True


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
    removed. What cannot be hard-linked (a directory) is renamed after a check
    that the new name is free. A symlink is moved as the link itself, never
    followed, so a symlink loop is moved aside like any other bad file.
    """
    stamp = at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = f"{path.name}.{label}-{stamp}"
    for n in itertools.count():
        target = path.with_name(base if n == 0 else f"{base}-{n}")
        try:
            os.link(path, target, follow_symlinks=False)
        except FileExistsError:
            continue
        except OSError:
            if os.path.lexists(path) and not os.path.lexists(target):
                # A file system without hard links: a checked rename is the best left.
                os.rename(path, target)
                fsync_folder(path.parent)
                return target
            raise
        os.unlink(path)
        fsync_folder(path.parent)
        return target
    raise AssertionError("unreachable")  # itertools.count() never ends


def secure_folder(path: Path) -> None:
    """Create ``path`` (and its parents) as ``0700``, or fix its mode if it exists with another."""
    path.mkdir(mode=PRIVATE_FOLDER, parents=True, exist_ok=True)
    _fix_mode(path, PRIVATE_FOLDER, stat.S_ISDIR)


def secure_file(path: Path) -> None:
    """Make an existing regular file ``0600``; anything else at ``path`` is left as it is.

    A symlink's target is not ours to change, and a directory planted in a
    file's place keeps its mode so it can be moved aside and read as evidence.
    """
    _fix_mode(path, PRIVATE_FILE, stat.S_ISREG)


def create_private_file(path: Path, *, companions: tuple[str, ...] = ()) -> None:
    """Create ``path`` empty and ``0600`` if nothing is there, else fix its mode as ``secure_file`` does.

    For files another program creates with the umask's mode (SQLite's database):
    created here first, the program finds it and keeps its mode. ``O_EXCL`` never
    creates through a symlink. ``companions`` are name suffixes of files that
    program keeps beside it (SQLite's ``-wal``, ``-shm``): fixed if they exist.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), PRIVATE_FILE)
    except FileExistsError:
        secure_file(path)
    else:
        os.close(fd)
    for suffix in companions:
        secure_file(path.with_name(path.name + suffix))


def _fix_mode(path: Path, mode: int, kind: Callable[[int], bool]) -> None:
    try:
        info = os.lstat(path)  # never through a symlink
    except FileNotFoundError:
        return
    if kind(info.st_mode) and stat.S_IMODE(info.st_mode) != mode:
        os.chmod(path, mode)
