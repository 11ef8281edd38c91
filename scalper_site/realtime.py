"""The one helper that pushes failover news to websocket clients.

A push is handed, once the transaction commits, to one sender thread per process
with an event loop of its own, which sends the pushes in order. Sending inline
(``async_to_sync`` around the channel layer) cost ~8 ms of the caller's time per
state change, and a recovery plan makes eight or more of them. Pushes are news,
not the record (the dashboard reads the state on connect): one that cannot be
sent is logged and dropped; at exit the sender gets two seconds to finish.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import time
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction

from scalper_site import bus

logger = logging.getLogger(__name__)

FAILOVER_GROUP = "failover"
BADGE_KIND = "failover.badge"  # the bus message that carries a failover.status push


class _Sender:
    """One daemon thread a process (made again after a fork) that sends pushes in the order given."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self._pending = 0

    def submit(self, message: dict[str, Any]) -> None:
        with self._lock:
            if self._pid != os.getpid():
                self._start()
            self._pending += 1
            loop, queue = self._loop, self._queue
        assert loop is not None and queue is not None
        loop.call_soon_threadsafe(queue.put_nowait, message)

    def flush(self, timeout_s: float) -> bool:
        """Wait until every submitted push has been sent (or dropped); False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            if self._pid != os.getpid():
                return True  # nothing was submitted in this process
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True

    def _start(self) -> None:
        ready = threading.Event()
        self._pid, self._pending = os.getpid(), 0

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop, self._queue = loop, asyncio.Queue()
            loop.create_task(self._consume(self._queue))
            ready.set()
            loop.run_forever()

        threading.Thread(target=run, name="failover-push", daemon=True).start()
        ready.wait(5)

    async def _consume(self, queue: asyncio.Queue) -> None:
        layer = get_channel_layer()
        while True:
            message = await queue.get()
            try:
                await layer.group_send(FAILOVER_GROUP, message)
            except Exception as exc:  # news, not the record: never let one failure stop the next
                logger.warning("failover push %s not sent: %s", message.get("kind"), exc)
            finally:
                with self._lock:
                    self._pending -= 1
                    self._lock.notify_all()


_sender = _Sender()
atexit.register(_sender.flush, 2.0)


def push_failover_message(*, kind: str, payload: dict[str, Any], version: int | None = None) -> None:
    """Send ``payload`` to every dashboard socket once the current transaction commits.

    ``version`` is the failover state's version the payload was read at, when the payload is that state
    (the page never shows a panel older than its badge); other pushes go without one.
    """
    message: dict[str, Any] = {"type": "failover.message", "kind": kind, "payload": payload}
    if version is not None:
        message["version"] = version

    def send() -> None:
        layer = get_channel_layer()
        if isinstance(layer, InMemoryChannelLayer):
            # The in-memory layer (unit tests) lives on the caller's event loop: send there.
            async_to_sync(layer.group_send)(FAILOVER_GROUP, message)
            return
        if kind == "failover.status" and version is not None:
            # The badge also takes the fast lane: one publish from this thread, heard by every web process's
            # bus subscription and handed to its sockets (scalper_site/status_fastpath.py). The layer's copy
            # follows as before; a socket sends each version once, whichever copy comes first.
            bus.publish(BADGE_KIND, {"version": version, "data": payload})
        _sender.submit(message)

    transaction.on_commit(send)


def flush_pushes(timeout_s: float) -> bool:
    """Wait, at most ``timeout_s``, until every push submitted so far in this process is sent; False on timeout.

    The sender is a thread: while the caller goes on with CPU work it waits for the interpreter lock at each
    of the channel layer's Redis round trips (up to 5 ms each). A push that must leave now (the badge turning
    red when a failure is reported) is flushed before that work starts.
    """
    return _sender.flush(timeout_s)
