"""A bus listener whose Redis goes silent (a half-open socket, a frozen server) finds out and connects again.

Redis here is a small stand-in on loopback that speaks just enough RESP3 (what
redis-py asks for with HELLO): it confirms the subscription, answers other
commands with +OK, and answers PING only when told to.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from scalper_site import bus
from scalper_site.bus import BusListener
from scalper_site.testkit import wait_until


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


class _StandIn:
    """A loopback server that talks RESP3 pub/sub; ``answer_pings`` False is a server gone silent."""

    def __init__(self, *, answer_pings: bool) -> None:
        self.answer_pings = answer_pings
        self.connections = 0
        self.pings = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._server.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        buffer = b""
        with conn:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                buffer += chunk
                while (command := self._command(buffer)) is not None:
                    words, buffer = command
                    name = words[0].upper()
                    if name == b"HELLO":
                        conn.sendall(b"%1\r\n" + _bulk(b"proto") + b":3\r\n")
                    elif name == b"SUBSCRIBE":
                        conn.sendall(b">3\r\n" + _bulk(b"subscribe") + _bulk(words[1]) + b":1\r\n")
                    elif name == b"PING":
                        self.pings += 1
                        if self.answer_pings:
                            conn.sendall(b"+PONG\r\n")
                    else:
                        conn.sendall(b"+OK\r\n")

    @staticmethod
    def _command(buffer: bytes) -> tuple[list[bytes], bytes] | None:
        """One RESP array of bulk strings off the front of ``buffer``, or None until it is all there."""
        lines = buffer.split(b"\r\n")
        if len(lines) < 2 or not lines[0].startswith(b"*"):
            return None
        count = int(lines[0][1:])
        if len(lines) < 1 + 2 * count + 1:
            return None
        words = [lines[2 + 2 * i] for i in range(count)]
        consumed = sum(len(line) + 2 for line in lines[: 1 + 2 * count])
        return words, buffer[consumed:]


@pytest.fixture(autouse=True)
def _quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bus, "PING_EVERY_S", 0.2)
    monkeypatch.setattr(bus, "SILENT_AFTER_S", 0.8)


@pytest.fixture
def listener_on() -> Iterator[object]:
    started: list[BusListener] = []

    def start(server: _StandIn) -> BusListener:
        listener = BusListener(lambda message: None, url=f"redis://127.0.0.1:{server.port}/0").start()
        started.append(listener)
        return listener

    yield start
    for listener in started:
        listener.stop()


def test_a_silent_redis_is_dropped_and_connected_again(listener_on) -> None:
    server = _StandIn(answer_pings=False)
    try:
        listener = listener_on(server)
        assert listener.connected.wait(5)  # set once the subscription is confirmed
        wait_until(lambda: server.connections >= 2, timeout=10, what="a new connection after the silence")
        assert server.pings >= 1  # it asked before it gave up
    finally:
        server.close()


def test_a_redis_that_answers_pings_keeps_its_connection(listener_on) -> None:
    server = _StandIn(answer_pings=True)
    try:
        listener = listener_on(server)
        assert listener.connected.wait(5)
        wait_until(lambda: server.pings >= 6, timeout=10, what="pings over several silence bounds")
        assert server.connections == 1 and listener.connected.is_set()
    finally:
        server.close()


def test_connected_waits_for_the_subscription_to_be_confirmed(listener_on) -> None:
    server = _StandIn(answer_pings=False)
    server_socket_accepts_but_never_confirms = socket.create_server(("127.0.0.1", 0))
    try:
        port = server_socket_accepts_but_never_confirms.getsockname()[1]
        listener = BusListener(lambda message: None, url=f"redis://127.0.0.1:{port}/0").start()
        try:
            assert not listener.connected.wait(0.5)  # connected, not confirmed: a publish now could be lost
        finally:
            listener._stop.set()
    finally:
        server.close()
        server_socket_accepts_but_never_confirms.close()
