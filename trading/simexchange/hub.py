"""WebSocket connections of the simulator and the fan-out of messages to them.

Each connection has its own queue and writer task, so one slow client (or an
injected latency) never delays the others, and messages keep their order.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from typing import Any, Protocol

import msgspec
from aiohttp import web

from .faults import FaultRegistry

# Topics whose first message after a (re)subscribe must be a snapshot (pybit rule).
SNAPSHOT_KINDS = ("orderbook", "tickers")


def needs_snapshot(topic: str) -> bool:
    return topic.split(".", 1)[0] in SNAPSHOT_KINDS


_encode = msgspec.json.Encoder().encode


def dumps(msg: Any) -> str:
    """Encode one frame (msgspec: compact, several times the stdlib's speed on the fan-out path)."""
    return _encode(msg).decode("utf-8")


class Snapshots(Protocol):
    """The market feed as the hub sees it: the snapshot a subscriber who missed a message gets instead."""

    def snapshot(self, topic: str, now: int) -> dict[str, Any] | None: ...


class HubHost(Protocol):
    """What the hub reads of the exchange it serves: the faults in force and the market's snapshots."""

    @property
    def faults(self) -> FaultRegistry: ...

    @property
    def feed(self) -> Snapshots: ...


class Conn:
    """One client WebSocket: its stream, subscriptions and outgoing queue."""

    def __init__(self, hub: Hub, ws: web.WebSocketResponse, request: web.Request, stream: str) -> None:
        self.hub = hub
        self.ws = ws
        self.request = request
        self.stream = stream  # "public" | "private"
        self.conn_id = f"{uuid.uuid4().hex[:20]}-{stream[:3]}"
        self.topics: set[str] = set()
        self.need_snapshot: set[str] = set()
        self.authed = False
        self.queue: asyncio.Queue[tuple[float, str]] = asyncio.Queue()
        self.sent = 0
        self.last_seen = asyncio.get_running_loop().time()  # the last frame it sent (its heartbeat)
        self.writer = asyncio.get_running_loop().create_task(self._write_loop())

    def send(self, text: str, min_delay: float = 0.0) -> None:
        """Queue a text frame; the injected latency is decided now, so order is kept."""
        loop = asyncio.get_running_loop()
        delay = self.hub.sim.faults.delay_s(f"ws_{self.stream}") if self.hub.sim.faults.faults else 0.0
        self.queue.put_nowait((loop.time() + max(delay, min_delay), text))

    def silent(self) -> bool:
        return self.hub.sim.faults.stream_fault("ws_silent", self.stream) is not None

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                send_at, text = await self.queue.get()
                wait = send_at - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if self.ws.closed:
                    return
                if self.silent():
                    self.need_snapshot |= {t for t in self.topics if needs_snapshot(t)}
                    continue
                await self.ws.send_str(text)
                self.sent += 1
        except (ConnectionResetError, RuntimeError, asyncio.CancelledError):
            return

    async def drop(self, mode: str) -> None:
        """Close cleanly (close frame) or cut the TCP connection with no close frame."""
        if mode == "abort":
            transport = self.request.transport
            if transport is not None:
                transport.abort()
            return
        with contextlib.suppress(Exception):
            await self.ws.close(code=1000, message=b"simulated close")

    def describe(self) -> dict[str, Any]:
        return {"connId": self.conn_id, "stream": self.stream, "authed": self.authed,
                "topics": sorted(self.topics), "sent": self.sent}


class Hub:
    """Registry of connections, by stream and by topic."""

    def __init__(self, sim: HubHost) -> None:
        self.sim = sim
        self.conns: set[Conn] = set()
        self.by_topic: dict[tuple[str, str], set[Conn]] = defaultdict(set)

    def add(self, conn: Conn) -> None:
        self.conns.add(conn)

    def remove(self, conn: Conn) -> None:
        self.conns.discard(conn)
        for topic in conn.topics:
            self.by_topic[(conn.stream, topic)].discard(conn)
        conn.topics.clear()
        conn.writer.cancel()

    def subscribe(self, conn: Conn, topic: str) -> None:
        conn.topics.add(topic)
        self.by_topic[(conn.stream, topic)].add(conn)

    def unsubscribe(self, conn: Conn, topic: str) -> None:
        conn.topics.discard(topic)
        conn.need_snapshot.discard(topic)
        self.by_topic[(conn.stream, topic)].discard(conn)

    def wanted(self, topic: str) -> bool:
        return bool(self.by_topic.get(("public", topic)))

    def wanted_private(self, topic: str) -> bool:
        return bool(self.by_topic.get(("private", topic)))

    def heard_from(self, topic: str, since: float) -> bool:
        """Whether an authenticated private subscriber of ``topic`` sent a frame after ``since`` (loop time)."""
        return any(c.authed and c.last_seen > since for c in self.by_topic.get(("private", topic), ()))

    def streams(self, stream: str) -> list[Conn]:
        return [c for c in self.conns if stream in ("all", c.stream)]

    # -- fan-out ---------------------------------------------------------------
    def publish_public(self, msg: dict[str, Any]) -> None:
        """Send a public message to its subscribers; a subscriber that missed one gets a snapshot."""
        topic = msg["topic"]
        subs = self.by_topic.get(("public", topic))
        if not subs:
            return
        symbol = topic.rsplit(".", 1)[-1]
        snap_kind = needs_snapshot(topic)
        if self.sim.faults.faults and self.sim.faults.frozen(symbol):
            if snap_kind:
                for conn in subs:
                    conn.need_snapshot.add(topic)
            return
        text: str | None = None
        snap_text: str | None = None
        for conn in list(subs):
            if snap_kind and topic in conn.need_snapshot:
                if snap_text is None:
                    snap = self.sim.feed.snapshot(topic, msg.get("ts", 0))
                    snap_text = dumps(snap)
                conn.need_snapshot.discard(topic)
                conn.send(snap_text)
                continue
            if text is None:
                text = dumps(msg)
            conn.send(text)

    def publish_private(self, topic: str, msg: dict[str, Any]) -> None:
        text = dumps(msg)
        for conn in list(self.by_topic.get(("private", topic), ())):
            if conn.authed:
                conn.send(text)

    def describe(self) -> list[dict[str, Any]]:
        return [c.describe() for c in self.conns]
