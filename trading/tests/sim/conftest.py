"""Fixtures of the simulator tests: a live simulator on a free loopback port, pybit pointed at it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from trading.simexchange.control import SimControl
from trading.simexchange.pybit_target import SimWebSocket, sim_http, sim_websocket
from trading.simexchange.server import SimServer

# A small BTCUSDT book: best bid 50000.0, best ask 50001.0, thin enough that size walks it.
BTC_BIDS = [("50000.0", "0.5"), ("49999.0", "1.0"), ("49990.0", "5.0")]
BTC_ASKS = [("50001.0", "0.5"), ("50002.0", "1.0"), ("50010.0", "5.0")]
ETH_BIDS = [("3000.00", "10"), ("2999.00", "20")]
ETH_ASKS = [("3001.00", "10"), ("3002.00", "20")]

# Small pybit timings so drops and silences are noticed within a second or two.
FAST_WS = {"ping_interval": 1, "ping_timeout": 0.5, "retries": 3}


def wait_for(pred: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll ``pred`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


class Collector:
    """A thread-safe pybit callback that keeps every message it gets."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, msg: dict[str, Any]) -> None:
        with self._lock:
            self.messages.append(json.loads(json.dumps(msg)))  # pybit reuses its merged dicts

    def topic(self, topic: str) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.messages if m.get("topic") == topic]

    def data(self, topic: str) -> list[dict[str, Any]]:
        """Flatten the ``data`` lists of a private topic."""
        return [d for m in self.topic(topic) for d in m["data"]]

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()


@pytest.fixture
def sim() -> Iterator[SimServer]:
    server = SimServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ctl(sim: SimServer) -> SimControl:
    control = SimControl(sim.base_url, token=sim.token)
    control.set_book("BTCUSDT", BTC_BIDS, BTC_ASKS)
    control.set_book("ETHUSDT", ETH_BIDS, ETH_ASKS)
    control.trade("BTCUSDT", "50000.5", "0.001")
    control.trade("ETHUSDT", "3000.50", "0.01")
    return control


@pytest.fixture
def http(sim: SimServer) -> Any:
    # retry_codes={-1}: pybit would otherwise sleep and retry 10002/10006 by itself.
    return sim_http(sim.base_url, retry_codes={-1}, max_retries=1, timeout=5)


@pytest.fixture
def sockets() -> Iterator[list[SimWebSocket]]:
    """Collect pybit WebSockets opened by a test and close them afterwards."""
    opened: list[SimWebSocket] = []
    yield opened
    for ws in opened:
        try:
            ws.exit()
        except Exception:  # a socket the test killed may fail to close again
            pass


@pytest.fixture
def open_ws(sim: SimServer, sockets: list[SimWebSocket]) -> Callable[..., SimWebSocket]:
    def make(channel: str = "linear", **kw: Any) -> SimWebSocket:
        options = {**FAST_WS, **kw}
        ws = sim_websocket(channel, sim.ws_base, **options)
        sockets.append(ws)
        return ws

    return make
