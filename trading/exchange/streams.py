"""The pybit adapter's streaming half: public and private WebSockets that are watched, not trusted.

pybit's WebSocket can die silently (a malformed message, an exception in a
callback, a burst of failed reconnects, an auth or subscribe refusal) and has no
disconnect callback. So the product measures each stream itself (connected or
not, time since anything arrived, including pongs) and rebuilds a stream that
stayed down, with backoff, for as long as it stays down. Every raw message goes
to one sink; the sink and the parsing here never raise into pybit's thread.

pybit can also wait for ever: once it gives up reconnecting, ``subscribe`` loops
``while not is_connected(): sleep(0.1)`` with no bound. So a build has a bound
of its own (``build_timeout_s``): a build still running past it is abandoned,
its socket told so (every ``is_connected`` pybit asks of it from then on raises
``StreamAbandoned``, which ends pybit's loops in that socket's threads), and a
fresh client is built. What an abandoned build produces later is thrown away.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from trading.exchange.port import StreamSink, StreamStatus
from trading.marketdata.wire import PublicDecoder, WireError

if TYPE_CHECKING:
    # The mixin always sits in front of pybit's WebSocket, which defines the hooks it extends.
    from pybit._websocket_stream import _WebSocketManager as _PybitSocket
else:
    _PybitSocket = object

logger = logging.getLogger(__name__)


def monotonic_ms() -> int:
    return int(time.monotonic() * 1000)


class StreamAbandoned(ConnectionError):
    """The product gave up on this socket: pybit's waits on it end here."""


class MonitoredSocketMixin(_PybitSocket):
    """Mixed in front of a pybit ``WebSocket`` class: records liveness, drops hostile frames, can be abandoned."""

    def __init__(
        self,
        *args: Any,
        stream_status: StreamStatus,
        on_hostile: Callable[[str], None],
        on_created: Callable[[MonitoredSocketMixin], None] | None = None,
        **kwargs: Any,
    ):
        self._stream_status = stream_status
        self._on_hostile = on_hostile
        self._abandoned = False
        # Public messages decoded typed (numbers parsed, as the normaliser wants them); others as plain JSON.
        self._decoder = PublicDecoder()
        if on_created is not None:
            on_created(self)  # before pybit connects: the owner can abandon a constructor that never returns
        super().__init__(*args, **kwargs)

    def abandon(self) -> None:
        """Make every later wait of pybit on this socket fail at once; deliver nothing more from it."""
        self._abandoned = True

    def is_connected(self) -> bool:
        if self._abandoned:
            raise StreamAbandoned("the product abandoned this socket")
        return bool(super().is_connected())

    def _on_message(self, message: str) -> None:
        if self._abandoned:
            return
        self._stream_status.last_message_ms = monotonic_ms()
        try:
            parsed = self._decoder.decode(message)
        except WireError as exc:
            # pybit would let this kill its thread (so would a number or nesting past Python's limits);
            # the product reports it, with msgspec's reason, and keeps the stream.
            self._on_hostile(f"not JSON ({exc.reason}): {message[:80]!r}")
            return
        if not isinstance(parsed, dict):
            self._on_hostile(f"not an object: {message[:80]!r}")
            return
        if parsed.get("ret_msg") == "pong" or parsed.get("op") == "pong":
            return
        self.callback(parsed)

    def _on_pong(self) -> None:
        self._stream_status.last_message_ms = monotonic_ms()
        super()._on_pong()

    def _on_open(self) -> None:
        # pybit reconnects by itself without telling anyone; every open is counted so
        # the product knows to resync (private topics do not replay what was missed).
        self._stream_status.opens += 1
        self._stream_status.last_message_ms = monotonic_ms()
        super()._on_open()


SocketFactory = Callable[..., Any]
"""Builds a connected pybit WebSocket: factory(stream_status=, on_hostile=, on_created=, callback_function=)."""


class ManagedStream:
    """One pybit WebSocket and the means to rebuild it."""

    def __init__(
        self,
        name: str,
        *,
        factory: SocketFactory,
        subscribe: Callable[[Any], None],
        sink: StreamSink,
        rebuild_after_ms: int = 3000,
        # A stream is rebuilt at least this often for as long as it stays down: after a long outage the
        # first build once the exchange is back comes within this bound, which the liveness bound counts.
        max_backoff_ms: int = 8000,
        build_timeout_s: float = 15.0,
    ) -> None:
        self.name = name
        self.status = StreamStatus(name=name)
        self.hostile_messages = 0
        self._factory = factory
        self._subscribe = subscribe
        self._sink = sink
        self._socket: Any = None
        self._down_since_ms: int | None = None
        self._next_build_ms = 0
        self._backoff_ms = 500
        self._rebuild_after_ms = rebuild_after_ms
        self._max_backoff_ms = max_backoff_ms
        self._build_timeout_s = build_timeout_s
        self._building: threading.Thread | None = None
        self._build_started_ms = 0
        self._generation = 0  # the build whose socket may become the stream's; older ones are abandoned
        self._pending: Any = None  # the socket the current build is making, once pybit created it
        self.abandoned_builds = 0
        self._lock = threading.Lock()

    # Called from pybit's thread: never raise.
    def _deliver(self, message: dict[str, Any]) -> None:
        try:
            self._sink(self.name, message)
        except Exception:
            logger.exception("stream sink failed on a %s message", self.name)

    def _hostile(self, description: str) -> None:
        self.hostile_messages += 1
        logger.warning("hostile message on the %s stream: %s", self.name, description)
        self.status.errors.append(description)
        del self.status.errors[:-20]

    def is_connected(self) -> bool:
        socket = self._socket
        if socket is None:
            return False
        try:
            return bool(socket.is_connected())
        except Exception:
            return False

    def start(self) -> None:
        """Build the first socket in the background; ``check`` keeps it alive after that."""
        self._spawn_build()

    def check(self, now_ms: int | None = None) -> StreamStatus:
        """Measure the stream and rebuild it if it stayed down; call this periodically."""
        now = monotonic_ms() if now_ms is None else now_ms
        connected = self.is_connected()
        self.status.connected = connected
        if connected:
            self._down_since_ms = None
            return self.status
        if self._down_since_ms is None:
            self._down_since_ms = now
        # pybit reconnects by itself after most drops; give it a moment, then assume it gave up.
        if now - self._down_since_ms >= self._rebuild_after_ms and now >= self._next_build_ms:
            self.status.gave_up = True
            self._spawn_build()
            self._next_build_ms = now + self._backoff_ms
            self._backoff_ms = min(self._backoff_ms * 2, self._max_backoff_ms)
        return self.status

    def _spawn_build(self) -> None:
        with self._lock:
            if self._building is not None and self._building.is_alive():
                if monotonic_ms() - self._build_started_ms < self._build_timeout_s * 1000:
                    return
                self._abandon_pending(f"did not connect within {self._build_timeout_s:.0f}s")
            self._generation += 1
            self._build_started_ms = monotonic_ms()
            self._building = threading.Thread(
                target=self._build, args=(self._generation,), name=f"build-{self.name}-ws", daemon=True
            )
            self._building.start()

    def _abandon_pending(self, why: str) -> None:
        """Give up the build under way (the lock is held): its socket is told, its result will be discarded."""
        self._generation += 1
        self.abandoned_builds += 1
        pending, self._pending = self._pending, None
        logger.warning("abandoned a build of the %s stream: %s", self.name, why)
        self.status.errors.append(f"build abandoned: {why}")
        del self.status.errors[:-20]
        if pending is not None:
            _abandon(pending)

    def _created(self, generation: int, socket: Any) -> None:
        with self._lock:
            if generation == self._generation:
                self._pending = socket
                return
        _abandon(socket)  # created by a build given up meanwhile

    def _build(self, generation: int) -> None:
        old, self._socket = self._socket, None
        if old is not None:
            _close_quietly(old)
        try:
            socket = self._factory(
                stream_status=self.status,
                on_hostile=self._hostile,
                on_created=lambda created: self._created(generation, created),
                callback_function=self._deliver,
            )
            if not socket.is_connected():
                raise ConnectionError("connected socket expected from the factory")
            self._subscribe(socket)
        except Exception as exc:  # refused, timed out, auth refused, abandoned: try again after backoff
            if generation == self._generation:
                logger.warning("building the %s stream failed: %s", self.name, exc)
                self.status.errors.append(f"build failed: {exc}")
                del self.status.errors[:-20]
            return
        with self._lock:
            current = generation == self._generation
            if current:
                self._pending = None
                self._socket = socket
        if not current:
            _abandon(socket)
            return
        self.status.connects += 1
        self.status.rebuilds += 1 if self.status.connects > 1 else 0
        self.status.gave_up = False
        self._backoff_ms = 500
        self.status.last_message_ms = monotonic_ms()

    def close(self) -> None:
        """Close the socket and give up a build under way, so the next ``start`` builds a fresh client."""
        with self._lock:
            if self._building is not None and self._building.is_alive():
                self._abandon_pending("the stream was closed")
            socket, self._socket = self._socket, None
        if socket is not None:
            _close_quietly(socket)


def _abandon(socket: Any) -> None:
    """Tell a socket it is given up (a monitored one stops pybit's waits) and close it; never waits."""
    abandon = getattr(socket, "abandon", None)
    if abandon is not None:
        abandon()
    threading.Thread(target=_exit_socket, args=(socket,), name="abandoned-ws-exit", daemon=True).start()


def _close_quietly(socket: Any) -> None:
    closer = threading.Thread(target=_exit_socket, args=(socket,), daemon=True)
    closer.start()
    closer.join(timeout=2.0)  # pybit's exit() waits for the socket; never let it hang the caller


def _exit_socket(socket: Any) -> None:
    try:
        socket.exit()
    except Exception:
        pass


def public_subscriber(symbols: list[str], *, depth: int = 50) -> Callable[[Any], None]:
    """Subscribe order book, trades and tickers of ``symbols`` on a public socket."""

    def subscribe(socket: Any) -> None:
        def ignore(_: Any) -> None:
            return None

        socket.subscribe(topic=f"orderbook.{depth}.{{symbol}}", callback=ignore, symbol=symbols)
        socket.subscribe(topic="publicTrade.{symbol}", callback=ignore, symbol=symbols)
        socket.subscribe(topic="tickers.{symbol}", callback=ignore, symbol=symbols)

    return subscribe


def private_subscriber(socket: Any) -> None:
    """Subscribe the private topics the product tracks."""

    def ignore(_: Any) -> None:
        return None

    for topic in ("order", "execution", "position", "wallet"):
        socket.subscribe(topic=topic, callback=ignore)
