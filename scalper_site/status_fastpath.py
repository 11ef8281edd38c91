"""``GET /api/failover/status`` answered on the event loop from its snapshot, when that is the same answer.

The status endpoint is the API's most polled read. Through Django and DRF a
request costs about 2 ms of CPU before the view does anything, so two uvicorn
workers on two cores serve under 300 a second. This ASGI layer sits in front of
Django and answers one request shape itself; everything else, and every case it
is not sure of, goes to Django unchanged.

What it answers: ``GET /api/failover/status`` with no query string, no cookie,
and exactly ``Authorization: Token <key>``, when all of these hold:

- the token's digest was accepted by the full stack (knox, through
  ``FailoverStatusView``) in this process within ``TOKEN_RECHECK_S``, and its
  expiry is ahead: a revoked token, or a deactivated user, is refused by Django
  again at most ``TOKEN_RECHECK_S`` later;
- the full stack answered the same request shape (scheme, host, accept and the
  proxy headers) with a 200 JSON body before: the answer carries the headers
  Django's middleware gave that answer (security headers, CSP, Vary, Allow),
  without its cookies, length and date;
- the snapshot the view last built (``failover/status_snapshot.py``) is at most
  ``max_age_s`` old, was read after this process subscribed to the bus without a
  gap since, and is of the newest version announced on the bus; a failure being
  reported (announced before it is written) holds the fast path back until its
  version is announced, at most ``PENDING_HOLD_S``.

Past half its age the snapshot is built again, and a token is checked with knox
again, on a thread of this layer's own (one at a time, never waited for), so the
requests keep being answered here instead of one a second per worker going
through Django to do it. A refresh still running after ``REFRESH_STUCK_S`` (a
database call that hangs) is given up: the next one runs on a new thread. A
thread cannot be stopped, so at most ``MAX_STUCK_REFRESHES`` are left behind;
past that, refreshes wait for one of them and the requests go through Django
as the snapshot ages out.

The body is the snapshot rendered by DRF's own JSON renderer, with each
answer's ``timestamp``, byte for byte what the view would answer. The view's
own check (one read of the state row's version per request) is what the bus
replaces here: a change shows once its notification arrives, within a
millisecond or so of the commit; a notification lost without the subscription
dropping leaves an answer at most ``max_age_s`` behind, the bound the snapshot
already keeps for changes that do not bump the version.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import redis.asyncio as aioredis
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone
from knox.crypto import hash_token
from knox.settings import knox_settings
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.renderers import JSONRenderer

from failover.domain._codec import format_ts
from failover.recovery import records
from failover.status_snapshot import DEFAULT_MAX_AGE_S, Snapshot, StatusSnapshots
from scalper_site import bus
from scalper_site.logins import ApiTokenAuthentication
from scalper_site.realtime import BADGE_KIND

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PATH = "/api/failover/status"
TOKEN_RECHECK_S = 1.0
PENDING_HOLD_S = 2.0
MAX_SHAPES = 32
REFRESH_STUCK_S = 10.0  # a refresh running this long is given up, and the next runs on a new thread
MAX_STUCK_REFRESHES = 4  # threads left behind by given-up refreshes, at most
SOCKET_SEND_S = 1.0

# Request headers Django's answer to this path may depend on (its host, the scheme, content negotiation).
_SHAPE_HEADERS = (b"host", b"accept", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port")
# Response headers never replayed: each answer's own, or a cookie meant for one client.
_DROPPED = frozenset({b"content-length", b"date", b"server", b"set-cookie"})
_MARK = f"status-fastpath-{uuid.uuid4().hex}"


class VerifiedTokens:
    """Digests of API tokens the full stack accepted lately in this process, with their expiry."""

    def __init__(self, *, recheck_s: float = TOKEN_RECHECK_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._recheck_s = recheck_s
        self._clock = clock
        self._accepted: dict[str, tuple[float, datetime | None]] = {}
        self._lock = threading.Lock()

    def accepted(self, digest: str, expiry: datetime | None) -> None:
        """Record that knox just accepted the token of ``digest`` (the view calls it, on its own thread)."""
        with self._lock:
            if len(self._accepted) >= 1024:  # bounded: stale entries are worthless anyway
                self._accepted.clear()
            self._accepted[digest] = (self._clock(), expiry)

    def age(self, token: str) -> float | None:
        """Seconds since ``token`` was last accepted, None when it may not be answered here."""
        entry = self._accepted.get(hash_token(token))
        if entry is None:
            return None
        accepted_at, expiry = entry
        age = self._clock() - accepted_at
        if age > self._recheck_s:
            return None
        if expiry is not None and expiry <= timezone.now():  # knox's own clock for expiry
            return None
        return age

    def recheck(self, token: str) -> None:
        """Ask knox again, as the view's authentication does (on the refresh thread): accepted, or forgotten."""
        digest = hash_token(token)
        try:
            _, auth_token = ApiTokenAuthentication().authenticate_credentials(token.encode("ascii"))
        except AuthenticationFailed:
            with self._lock:
                self._accepted.pop(digest, None)
            return
        self.accepted(auth_token.digest, auth_token.expiry)

    @property
    def recheck_s(self) -> float:
        return self._recheck_s


TOKENS = VerifiedTokens()


@dataclass
class _Heard:
    """What the bus has told this process so far (all times on the monotonic clock)."""

    listening_since: float | None = None  # subscribed, with no gap since; None while not
    last_heard: float = 0.0  # the last message or pong from Redis
    version: int = -1  # the newest version announced
    pending_at: float | None = None  # a failure announced before it was written, not yet versioned


class BadgeSocket(Protocol):
    async def badge(self, version: int, data: dict[str, Any]) -> None: ...


class StatusChanges:
    """This process's subscription to the environment's bus channel: which snapshots are still current,
    and the badge's fast lane to this process's dashboard sockets.

    It runs as a task on the web server's event loop, started by the first request
    or socket that asks, and reconnects by itself. Every read and write on Redis is
    bounded (connect and socket timeouts, a ping a second that must be answered; a
    socket gets ``SOCKET_SEND_S`` to take a badge).
    """

    def __init__(self, *, url: str = "", clock: Callable[[], float] = time.monotonic) -> None:
        self._url = url
        self._clock = clock
        self.heard = _Heard()
        self._task: asyncio.Task[None] | None = None
        self._sockets: weakref.WeakSet[BadgeSocket] = weakref.WeakSet()

    def watch(self, socket: BadgeSocket) -> None:
        """Hand ``socket`` every badge heard on the bus from now on (until ``unwatch`` or its collection)."""
        self._sockets.add(socket)
        self.ensure_running()

    def unwatch(self, socket: BadgeSocket) -> None:
        self._sockets.discard(socket)

    def ensure_running(self) -> None:
        """Start listening on the running loop unless already listening (no Redis configured: never)."""
        if not (self._url or settings.REDIS_URL):
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="status-changes")

    def current(self, snapshot: Snapshot) -> bool:
        """True when ``snapshot`` may be served now (see the module's docstring)."""
        heard, now = self.heard, self._clock()
        if heard.listening_since is None or now - heard.last_heard > bus.SILENT_AFTER_S:
            return False
        if snapshot.built_at < heard.listening_since:
            return False  # read before the subscription: a change in between would not have been heard
        if heard.pending_at is not None and now - heard.pending_at <= PENDING_HOLD_S:
            return False
        return snapshot.key[1] >= heard.version

    def on_message(self, message: dict[str, Any]) -> None:
        """Take one bus message (already decoded); only failover state changes matter here."""
        if message.get("kind") != "failover.changed":
            return
        payload = message.get("payload") or {}
        version = payload.get("version")
        if isinstance(version, int) and not isinstance(version, bool):
            # Announced by the gate before its commit: should that roll back, nothing is served here until
            # some commit reaches this version (every request goes through Django meanwhile).
            self.heard.version = max(self.heard.version, version)
            self.heard.pending_at = None
        elif payload.get("pending"):
            self.heard.pending_at = self._clock()

    def subscribed(self) -> None:
        now = self._clock()
        self.heard.listening_since = self.heard.last_heard = now

    def lost(self) -> None:
        self.heard.listening_since = None

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                self.lost()
                raise
            except Exception as exc:  # Redis down, a timeout, a reset: serve through Django until back
                logger.warning("status fast path lost the bus: %s", exc)
            self.lost()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _listen(self) -> None:
        url = self._url or settings.REDIS_URL
        client = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(bus.channel_name(url=url))
            confirmation = await pubsub.get_message(timeout=2)
            if confirmation is None or confirmation.get("type") != "subscribe":
                raise TimeoutError("no subscription confirmed within 2 s")
            self.subscribed()
            next_ping = self._clock() + bus.PING_EVERY_S
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.25)
                now = self._clock()
                if message is not None:
                    self.heard.last_heard = now
                    if message.get("type") == "message":
                        await self._take(message.get("data"))
                if now >= next_ping:
                    await pubsub.ping()
                    next_ping = now + bus.PING_EVERY_S
                if now - self.heard.last_heard > bus.SILENT_AFTER_S:
                    raise TimeoutError(f"Redis silent for {bus.SILENT_AFTER_S:g} s")
        finally:
            self.lost()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pubsub.aclose(), 2)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.aclose(), 2)

    async def _take(self, data: Any) -> None:
        try:
            message = bus.decode_message(data)
        except bus.DECODE_ERRORS as exc:
            logger.warning("status fast path ignored a malformed bus message: %s", exc)
            return
        self.on_message(message)
        await self.hand_badge(message)

    async def hand_badge(self, message: dict[str, Any]) -> None:
        """Give a badge message to every socket watching, one after the other (each within its bound)."""
        if message.get("kind") != BADGE_KIND:
            return
        payload = message.get("payload") or {}
        version, data = payload.get("version"), payload.get("data")
        if not isinstance(version, int) or isinstance(version, bool) or not isinstance(data, dict):
            logger.warning("status fast path ignored a badge without a version or a body")
            return
        for socket in list(self._sockets):
            try:
                await asyncio.wait_for(socket.badge(version, data), SOCKET_SEND_S)
            except Exception as exc:  # a slow or closed socket: the channel layer's copy still reaches it
                logger.warning("badge not handed to a socket: %r", exc)


CHANGES = StatusChanges()  # this process's: the fast path and the dashboard sockets share it


@dataclass(frozen=True, slots=True)
class _Rendered:
    snapshot: Snapshot
    head: bytes  # the body up to the timestamp's value
    tail: bytes  # the body after it


class _Refresher:
    """One refresh thread, and when its running refresh started (None while it waits)."""

    def __init__(self) -> None:
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="status-refresh")
        self.busy_since: float | None = None


class StatusFastPath:
    """The ASGI layer in front of Django (see the module's docstring)."""

    def __init__(self, app: ASGIApp, *, snapshots: StatusSnapshots, tokens: VerifiedTokens = TOKENS,
                 changes: StatusChanges | None = None, max_age_s: float = DEFAULT_MAX_AGE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._app = app
        self._snapshots = snapshots
        self._tokens = tokens
        self._changes = changes or CHANGES
        self._max_age_s = max_age_s
        self._clock = clock
        self._shapes: dict[tuple[Any, ...], list[tuple[bytes, bytes]]] = {}
        self._rendered: _Rendered | None = None
        self._refresher = _Refresher()
        self._refreshes: dict[str, concurrent.futures.Future[None]] = {}  # what is queued or running, by subject
        self._stuck: set[_Refresher] = set()  # given up while a refresh ran; each leaves once it ends
        self._stuck_lock = threading.Lock()
        self.answered = 0  # requests answered here (tests and the benchmark read it)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] != PATH or scope["query_string"]:
            await self._app(scope, receive, send)
            return
        self._changes.ensure_running()
        shape, token = self._request(scope)
        if shape is None:
            await self._app(scope, receive, send)
            return
        answer = self._answer(shape, token)
        if answer is None:
            await self._app(scope, receive, self._learning(shape, send))
            return
        headers, body = answer
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*headers, (b"Content-Length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        self.answered += 1

    def _request(self, scope: Scope) -> tuple[tuple[Any, ...] | None, str]:
        """The request's shape and token, or (None, "") when it is not the one request this layer answers."""
        found: dict[bytes, bytes] = {}
        authorization: list[bytes] = []
        for name, value in scope["headers"]:
            if name == b"cookie":
                return None, ""
            if name == b"authorization":
                authorization.append(value)
            elif name in _SHAPE_HEADERS:
                if name in found:
                    return None, ""  # a repeated header: Django decides what it means
                found[name] = value
        if len(authorization) != 1:
            return None, ""
        parts = authorization[0].split()  # as knox splits it
        if len(parts) != 2 or parts[0].lower() != knox_settings.AUTH_HEADER_PREFIX.encode().lower():
            return None, ""
        try:
            token = parts[1].decode("ascii")
        except UnicodeDecodeError:
            return None, ""
        return (scope.get("scheme", "http"), *(found.get(name) for name in _SHAPE_HEADERS)), token

    def _answer(self, shape: tuple[Any, ...], token: str) -> tuple[list[tuple[bytes, bytes]], bytes] | None:
        headers = self._shapes.get(shape)
        token_age = self._tokens.age(token)
        if headers is None or token_age is None:
            return None
        snapshot = self._snapshots.latest()
        if snapshot is None:
            return None
        age = self._clock() - snapshot.built_at
        if age > self._max_age_s or not self._changes.current(snapshot):
            return None
        if age > self._max_age_s / 2:
            self._refresh_soon("snapshot", self._rebuild)
        if token_age > self._tokens.recheck_s / 2:
            self._refresh_soon(f"token {hash_token(token)}", lambda: self._recheck(token))
        rendered = self._rendered
        if rendered is None or rendered.snapshot is not snapshot:
            rendered = self._render(snapshot)
            if rendered is None:
                return None
        stamp = format_ts(records.now()).encode()
        return headers, b"".join((rendered.head, b'"', stamp, b'"', rendered.tail))

    def _refresh_soon(self, subject: str, work: Callable[[], None]) -> None:
        """Queue ``work`` on the refresh thread unless the same subject is queued already (never waited for)."""
        self._give_up_a_stuck_refresh()
        queued = self._refreshes.get(subject)
        if queued is not None and not queued.done():
            return
        if len(self._refreshes) >= MAX_SHAPES:
            self._refreshes = {k: f for k, f in self._refreshes.items() if not f.done()}
        refresher = self._refresher
        self._refreshes[subject] = refresher.executor.submit(self._run_refresh, refresher, work)

    def _give_up_a_stuck_refresh(self) -> None:
        """Move on to a new refresh thread when the current one has run one refresh past ``REFRESH_STUCK_S``."""
        refresher = self._refresher
        started = refresher.busy_since
        if started is None or self._clock() - started <= REFRESH_STUCK_S:
            return
        with self._stuck_lock:  # the thread's own end takes it too: it is either still running, or gone
            if refresher.busy_since is None or len(self._stuck) >= MAX_STUCK_REFRESHES:
                return  # the threads left behind are bounded: refreshes queue behind this one
            self._stuck.add(refresher)
        logger.error("status fast path: a refresh has run for over %.0f s; the next ones run on a new thread "
                     "(%d given up)", REFRESH_STUCK_S, len(self._stuck))
        refresher.executor.shutdown(wait=False, cancel_futures=True)
        self._refresher = _Refresher()
        self._refreshes = {}  # cancelled with their thread: each subject is queued again when next due

    def _run_refresh(self, refresher: _Refresher, work: Callable[[], None]) -> None:
        refresher.busy_since = self._clock()
        try:
            self._with_connection(work)
        finally:
            with self._stuck_lock:
                refresher.busy_since = None
                self._stuck.discard(refresher)

    @property
    def stuck_refreshes(self) -> int:
        """Refresh threads given up and still running."""
        return len(self._stuck)

    @staticmethod
    def _with_connection(work: Callable[[], None]) -> None:
        close_old_connections()  # as a request does: a broken or pooled-out connection is replaced
        try:
            work()
        except Exception as exc:  # what it would refresh ages out, and requests go through Django
            logger.warning("status fast path refresh failed: %s", exc)
        finally:
            close_old_connections()

    def _rebuild(self) -> None:
        self._snapshots.refresh()

    def _recheck(self, token: str) -> None:
        self._tokens.recheck(token)

    def refreshed(self, timeout: float) -> bool:
        """Wait for every refresh queued so far (tests); False on timeout."""
        _, pending = concurrent.futures.wait(list(self._refreshes.values()), timeout=timeout)
        return not pending

    def _render(self, snapshot: Snapshot) -> _Rendered | None:
        body = dict(snapshot.body)
        body["timestamp"] = _MARK  # in the key's own place, as the view sets it
        parts = JSONRenderer().render(body).split(f'"{_MARK}"'.encode())
        if len(parts) != 2:
            return None
        self._rendered = _Rendered(snapshot=snapshot, head=parts[0], tail=parts[1])
        return self._rendered

    def _learning(self, shape: tuple[Any, ...], send: Send) -> Send:
        """``send`` that keeps the headers of Django's 200 JSON answer to this request shape."""

        async def learn(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                headers = list(message.get("headers", ()))
                content_type = next((v for n, v in headers if n.lower() == b"content-type"), b"")
                if content_type.split(b";")[0].strip() == b"application/json":
                    if len(self._shapes) >= MAX_SHAPES:
                        self._shapes.clear()
                    # Names as Django wrote them: the answer here is the same bytes.
                    self._shapes[shape] = [(n, v) for n, v in headers if n.lower() not in _DROPPED]
            await send(message)

        return learn
