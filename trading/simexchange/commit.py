"""Group commit: every change is on disk before anyone hears of it, with one fsync for a batch of changes.

``SimExchange.publish`` stages each change as one line of the change log
(``exchange_state.json.wal`` next to the state file) and holds its private
stream pushes; a REST or ``/sim`` answer waits in ``durable()``. One writer task
takes whatever was staged, appends it and fsyncs once on an I/O thread, then
releases the pushes and answers of that batch; changes staged meanwhile (by
concurrent requests) form the next batch. So a client never hears of a change a
``kill -9`` could lose, and a burst of N requests costs far fewer than N fsyncs.

The log is cut short by a checkpoint: the whole state file written atomically
(it names the last change it holds, ``walLsn``), then the log emptied. At start
the state file is read and the log's later lines applied over it; a torn last
line (a write the crash cut, never acknowledged) is dropped. Without a state
file everything is in memory and nothing waits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from failover.domain import files

log = logging.getLogger(__name__)

CHECKPOINT_BYTES = 8 * 1024 * 1024  # log size that asks for a checkpoint (the state file is rewritten)
WAL_SUFFIX = ".wal"

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode


def wal_path_for(state_path: Path) -> Path:
    """Return where the change log of the state file ``state_path`` lives (same folder)."""
    return state_path.with_name(state_path.name + WAL_SUFFIX)


def read_log(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the log's records in order; stop at the first line that does not decode (a torn tail)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return
    lines = raw.split(b"\n")
    for index, line in enumerate(lines):
        if not line:
            continue
        try:
            record = _decode(line)
        except msgspec.DecodeError:
            rest = sum(1 for later in lines[index + 1:] if later)
            if rest:
                log.error("simexchange: change log %s: line %d unreadable, %d later lines dropped",
                          path, index + 1, rest)
            return
        yield record


def set_aside_log(path: Path) -> None:
    """Move a change log that cannot be applied aside (never deleted), for the operator to look at."""
    if path.exists():
        aside = files.move_aside(path, datetime.now(UTC))
        log.error("simexchange: change log %s set aside as %s: the state it applies to is gone", path, aside)


class GroupCommit:
    """The change log and its one writer: stage changes, wait until they are durable, checkpoint."""

    def __init__(self, state_path: Path | None, snapshot: Callable[[int], bytes],
                 before_write: Callable[[], None]) -> None:
        """``snapshot(lsn)`` returns the whole state as bytes naming ``lsn`` as the last change it holds;
        ``before_write`` runs on the loop before each write (it flushes the exchange history)."""
        self.state_path = state_path
        self.wal_path = wal_path_for(state_path) if state_path is not None else None
        self._snapshot = snapshot
        self._before_write = before_write
        self.lsn = 0  # the last change staged
        self.durable_lsn = 0  # the last change on disk
        self._lines: list[bytes] = []
        self._held: list[tuple[int, Callable[[], None]]] = []  # pushes waiting for their change to be durable
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._log_bytes = 0
        self._checkpoint_wanted = False
        self._wake: asyncio.Event | None = None
        self._io: concurrent.futures.ThreadPoolExecutor | None = None
        self._inflight: concurrent.futures.Future[None] | None = None
        self._fd: int | None = None
        self.batches = 0  # writes done (for tests and benchmarks: changes / batches = the batching)

    @property
    def persistent(self) -> bool:
        return self.state_path is not None

    def resume(self, lsn: int) -> None:
        """Go on numbering after ``lsn`` (the last change read back at start)."""
        self.lsn = self.durable_lsn = max(self.lsn, lsn)

    # -- the loop side ------------------------------------------------------------------------
    def stage(self, record: dict[str, Any]) -> int:
        """Add one change to the next batch; return its number (0 without a state file)."""
        if not self.persistent:
            return 0
        self.lsn += 1
        record["lsn"] = self.lsn
        line = _encode(record) + b"\n"
        self._lines.append(line)
        self._log_bytes += len(line)
        self._kick()
        return self.lsn

    def after_durable(self, push: Callable[[], None]) -> None:
        """Run ``push`` once everything staged so far is on disk (now, when it already is)."""
        if self.durable_lsn >= self.lsn:
            push()
        else:
            self._held.append((self.lsn, push))

    def want_checkpoint(self) -> None:
        """Make the next batch a checkpoint (a reset, a shutdown)."""
        if self.persistent:
            self._checkpoint_wanted = True
            self.lsn += 1  # a change of its own: durable() waits for it
            self._kick()

    async def durable(self) -> None:
        """Return once every change staged before the call is on disk."""
        target = self.lsn
        if self.durable_lsn >= target:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        self._kick()
        await future

    def _kick(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        """The writer: one batch at a time, each one append and one fsync (or a checkpoint)."""
        self._wake = asyncio.Event()
        self._io = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="simexchange-commit")
        try:
            while True:
                if self.durable_lsn >= self.lsn:
                    self._wake.clear()
                    await self._wake.wait()
                await self._write_batch()
        finally:
            self._wake = None

    async def _write_batch(self) -> None:
        target = self.lsn
        try:
            self._before_write()
            job = self._job(target)
            self._inflight = self._submit(job)
            await asyncio.shield(asyncio.wrap_future(self._inflight))
        except Exception as exc:
            log.exception("simexchange: cannot write the exchange state")
            self._checkpoint_wanted = True  # the lost lines are in memory: the next batch writes it all
            self._fail(target, exc)
            await asyncio.sleep(0.1)  # a full disk is not retried in a busy loop
            return
        finally:
            self._inflight = None
        self._done(target)

    def _submit(self, job: Callable[[], None]) -> concurrent.futures.Future[None]:
        assert self._io is not None
        return self._io.submit(job)

    def _job(self, target: int) -> Callable[[], None]:
        """Take what is staged now; return the I/O that makes it durable (run on the I/O thread)."""
        lines, self._lines = self._lines, []
        if self._checkpoint_wanted or self._log_bytes > CHECKPOINT_BYTES:
            self._checkpoint_wanted = False
            self._log_bytes = 0
            data = self._snapshot(target)  # on the loop: the state as it is now, every staged change in it
            return lambda: self._checkpoint_io(data)
        payload = b"".join(lines)
        return lambda: self._append_io(payload)

    def _done(self, target: int) -> None:
        self.batches += 1
        self.durable_lsn = max(self.durable_lsn, target)
        held = [h for h in self._held if h[0] <= self.durable_lsn]
        self._held = [h for h in self._held if h[0] > self.durable_lsn]
        for _, push in held:
            push()
        self._release(lambda lsn: lsn <= self.durable_lsn, None)

    def _fail(self, target: int, exc: Exception) -> None:
        self._release(lambda lsn: lsn <= target, exc)

    def _release(self, which: Callable[[int], bool], exc: Exception | None) -> None:
        keep: list[tuple[int, asyncio.Future[None]]] = []
        for lsn, future in self._waiters:
            if not which(lsn):
                keep.append((lsn, future))
            elif not future.done():
                future.set_result(None) if exc is None else future.set_exception(exc)
        self._waiters = keep

    # -- synchronous side (start, shutdown, code without a loop) -------------------------------
    def checkpoint_now(self) -> None:
        """Write the whole state and empty the log now, on this thread, after any write in flight."""
        if not self.persistent:
            self.durable_lsn = self.lsn
            return
        self._before_write()
        self._lines = []
        self._log_bytes = 0
        self._checkpoint_wanted = False
        data = self._snapshot(self.lsn)
        if self._io is not None:  # after the writer's write in flight (one I/O thread: writes never overlap)
            self._io.submit(self._checkpoint_io, data).result(timeout=60)
        else:
            self._checkpoint_io(data)
        self._done(self.lsn)

    def close(self) -> None:
        if self._io is not None:
            self._io.shutdown(wait=True)
            self._io = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- the I/O thread ---------------------------------------------------------------------------
    def _log_fd(self) -> int:
        if self._fd is None:
            assert self.wal_path is not None
            self._fd = os.open(self.wal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, files.PRIVATE_FILE)
            files.fsync_folder(self.wal_path.parent)  # the log's name survives a power cut too
        return self._fd

    def _append_io(self, payload: bytes) -> None:
        fd = self._log_fd()
        view = memoryview(payload)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)

    def _checkpoint_io(self, data: bytes) -> None:
        assert self.state_path is not None
        files.atomic_write_bytes(self.state_path, data)
        # Every line in the log is in the state file now (it names the last one): the log starts over.
        fd = self._log_fd()
        os.ftruncate(fd, 0)
        os.fsync(fd)
