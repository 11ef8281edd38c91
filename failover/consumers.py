"""The dashboard's websocket: one stream for the whole page.

On connect: the failover status, then the page's panels (health, what holds safe mode, open positions and
orders, per-symbol status, PnL: ``scalper_site.api.account_views.PANELS``). Then every push of the group
(failover status, alerts, integration runs) and, every ``WS_PANELS_INTERVAL_S``, the panels that changed.
The sockets of one web process share their panel reads (``SharedReads``): however many are open, the
panels are read at most about twice an interval, not once per socket.
Every message carries ``version``, the failover state's version it was read at (for a push that is not the
state, the newest this socket knows), so the page never shows a panel older than its SAFE MODE badge:
``{"type": "health", "version": 42, "data": {...}}``.

The socket only speaks: a client frame is never parsed. The first one is answered with an error
message naming the rule, later ones are dropped, so no frame (binary, not JSON, nested a million
deep, megabytes long) can raise inside the ASGI app or make the server do work for it.

Limits, checked by this module (per web process):

- at most ``WS_MAX_SOCKETS_PER_USER`` sockets per user: the next is accepted only to be told
  ``TOO_MANY_SOCKETS`` and closed with code 4429;
- the session is checked on a timer, every ``WS_SESSION_CHECK_S`` seconds, against the session
  store: once it is gone (logout, expiry, a password change, an admin deleting it) the socket is
  closed with code 4401. A timer rather than a check before each push, so a socket closes even
  when nothing is pushed, and a push costs no database query.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from importlib import import_module
from typing import Any

from channels.auth import get_user
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.utils import timezone
from rest_framework.utils.encoders import JSONEncoder

from failover.services import failover_state_get
from scalper_site.realtime import FAILOVER_GROUP
from scalper_site.status_fastpath import CHANGES

logger = logging.getLogger(__name__)

# What the page listens to; anything else sent to the group stays server-side.
FORWARDED_KINDS = frozenset({"failover.status", "failover.run_status", "alert", "integration.progress"})

CLOSE_UNAUTHORIZED = 4401  # not logged in, or the session ended while the socket was open
CLOSE_TOO_MANY_SOCKETS = 4429
CLOSE_INTERNAL_ERROR = 1011


class SharedReads:
    """One read for every socket of this process: a result younger than ``fresh_s`` is shared, and a read under
    way is awaited rather than started again. A failed read fails its waiters and the next call reads again; a
    waiter that goes away (its socket closed) does not cancel the read for the others.

    The state belongs to one event loop (a web process runs one); another loop starts afresh.
    """

    def __init__(self, read: Callable[[], Awaitable[Any]], *, clock: Callable[[], float] = time.monotonic) -> None:
        self._read = read
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running: asyncio.Future[Any] | None = None
        self._last: tuple[float, Any] | None = None  # (when the read started, what it returned)

    async def get(self, fresh_s: float) -> Any:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._running, self._last = loop, None, None
        if self._last is not None and self._clock() - self._last[0] < fresh_s:
            return self._last[1]
        if self._running is None:
            self._running = asyncio.ensure_future(self._once())
            # Its failure is read here too, so one whose waiters all went away is not logged as never retrieved.
            self._running.add_done_callback(lambda done: done.cancelled() or done.exception())
        return await asyncio.shield(self._running)

    async def _once(self) -> Any:
        started = self._clock()
        try:
            result = await self._read()
        finally:
            self._running = None
        self._last = (started, result)
        return result


async def _read_panels() -> dict[str, Any]:
    from scalper_site.api.account_views import dashboard_panels  # the web layer's serializers

    return await database_sync_to_async(dashboard_panels)()


PANEL_READS = SharedReads(_read_panels)

# The open sockets of each user in this process. Weak, so a consumer that died without its
# disconnect handler (a crash) gives its place back when it is collected.
_open_sockets: dict[Any, weakref.WeakSet[FailoverConsumer]] = {}


def open_socket_count(user_pk: Any) -> int:
    """How many sockets the user has open in this process."""
    return len(_open_sockets.get(user_pk, ()))


def _error(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "data": {"code": code, "message": message}}


class FailoverConsumer(AsyncJsonWebsocketConsumer):
    """Forward failover news from the channel layer to an authenticated browser."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._user_pk: Any = None
        self._session_key: str | None = None
        self._answered_a_frame = False
        self._watcher: asyncio.Task[None] | None = None
        self._panels: asyncio.Task[None] | None = None
        self._version = 0  # the newest failover version this socket has sent
        self._status_version = -1  # the newest failover status (badge) this socket has sent
        self._sent: dict[str, Any] = {}  # each panel's data as last sent: an unchanged one is not sent again

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        if not self._take_place(user.pk):
            # Accepted only so that the page can be told why: a refused handshake reaches it as a bare 1006.
            await self.accept()
            limit = settings.WS_MAX_SOCKETS_PER_USER
            await self.send_json(_error("TOO_MANY_SOCKETS", f"at most {limit} live sockets per user"))
            await self.close(code=CLOSE_TOO_MANY_SOCKETS)
            return
        self._session_key = self.scope["session"].session_key
        # Join before reading: a change committed after the read is then pushed, never lost
        # (one committed just before may arrive twice; the page keeps the newest timestamp).
        await self.channel_layer.group_add(FAILOVER_GROUP, self.channel_name)
        CHANGES.watch(self)  # the badge's fast lane (scalper_site/status_fastpath.py); the group's copy follows
        await self.accept()
        try:
            state = await database_sync_to_async(failover_state_get)()
        except Exception:
            logger.exception("websocket: the failover status could not be read; closing the socket")
            await self.close(code=CLOSE_INTERNAL_ERROR)
            return
        self._status_version = state.version
        await self._send("failover.status", state.to_status_dict(timezone.now()), state.version)
        self._watcher = asyncio.create_task(self._watch_session())
        if settings.WS_PANELS_INTERVAL_S > 0:
            self._panels = asyncio.create_task(self._stream_panels(float(settings.WS_PANELS_INTERVAL_S)))

    async def disconnect(self, code: int) -> None:
        for task in (self._watcher, self._panels):
            if task is not None:
                task.cancel()
        self._give_place_back()
        CHANGES.unwatch(self)
        await self.channel_layer.group_discard(FAILOVER_GROUP, self.channel_name)

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        # Not parsed, whatever it holds: the page never sends, so any frame is a mistake or an attack.
        if self._answered_a_frame:
            return
        self._answered_a_frame = True
        await self.send_json(_error("CLIENT_MESSAGES_NOT_ACCEPTED",
                                    "this socket only sends; use the HTTP API for actions"))

    async def failover_message(self, event: dict[str, Any]) -> None:
        kind, payload = event.get("kind"), event.get("payload")
        if kind not in FORWARDED_KINDS or not isinstance(payload, dict):
            return
        if kind == "alert" and payload.get("runId"):
            return  # an integration run's alert: shown in its report, not in the product's live list
        version = event.get("version")
        if kind == "failover.status" and isinstance(version, int):
            await self.badge(version, payload)
            return
        await self._send(kind, payload, version if isinstance(version, int) else None)

    async def badge(self, version: int, data: dict[str, Any]) -> None:
        """Send the failover status of ``version`` unless this socket sent that version or a newer one.

        It comes twice, by the bus's fast lane and by the channel layer: the first copy is sent.
        """
        if version <= self._status_version:
            return
        self._status_version = version
        await self._send("failover.status", data, version)

    async def _send(self, kind: str, data: Any, version: int | None) -> None:
        if version is not None:
            self._version = max(self._version, version)
        await self.send_json({"type": kind, "version": self._version if version is None else version, "data": data})

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        return json.dumps(content, cls=JSONEncoder)  # DRF's: the serializers' numbers leave as JSON numbers

    # -- the panels ----------------------------------------------------------------

    async def _stream_panels(self, interval: float) -> None:
        """Send every panel now, then every ``interval`` those that changed (or were read at a newer version).

        The read is shared with the process's other sockets when it is younger than half the interval.
        """
        from scalper_site.api.account_views import PANELS  # the web layer's serializers

        while True:
            try:
                read = await PANEL_READS.get(interval / 2)
            except Exception:
                # A database or Redis hiccup: the page keeps what it shows and this reads again next time.
                logger.warning("websocket: the panels could not be read", exc_info=True)
            else:
                version = read["version"]
                for name in PANELS:
                    if self._sent.get(name) != (version, read[name]):
                        self._sent[name] = (version, read[name])
                        await self._send(name, read[name], version)
            await asyncio.sleep(interval)

    # -- the per-user limit --------------------------------------------------------

    def _take_place(self, user_pk: Any) -> bool:
        # No await between the count and the add: the event loop runs no other connect in between.
        sockets = _open_sockets.setdefault(user_pk, weakref.WeakSet())
        if len(sockets) >= settings.WS_MAX_SOCKETS_PER_USER:
            return False
        sockets.add(self)
        self._user_pk = user_pk
        return True

    def _give_place_back(self) -> None:
        sockets = _open_sockets.get(self._user_pk)
        if sockets is None:
            return
        sockets.discard(self)
        if not sockets:
            _open_sockets.pop(self._user_pk, None)

    # -- the session watch ---------------------------------------------------------

    async def _watch_session(self) -> None:
        interval = float(settings.WS_SESSION_CHECK_S)
        while True:
            await asyncio.sleep(interval)
            try:
                alive = await self._session_alive()
            except Exception:
                # The store could not be asked (a database hiccup): keep the socket and ask again next time.
                logger.warning("websocket: the session could not be checked", exc_info=True)
                continue
            if not alive:
                with contextlib.suppress(Exception):  # the socket may be closing already
                    await self.close(code=CLOSE_UNAUTHORIZED)
                return

    async def _session_alive(self) -> bool:
        # A fresh store each time: the scope's session holds what was read at connect.
        store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=self._session_key)
        user = await get_user({"session": store})
        return bool(user.is_authenticated) and user.pk == self._user_pk
