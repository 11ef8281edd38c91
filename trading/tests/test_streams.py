"""The product's watched streams against the simulator: what kills a bare pybit socket does not kill these."""

from __future__ import annotations

import itertools

import pytest

from scalper_site.testkit import wait_until
from trading.exchange.connect import ExchangeTarget, socket_factory
from trading.exchange.streams import ManagedStream, private_subscriber, public_subscriber
from trading.marketdata.generator import generate_messages
from trading.simexchange.control import SimControl
from trading.simexchange.server import SimServer


@pytest.fixture
def sim():
    market = generate_messages(["BTCUSDT"], 3, 1_763_479_200_000)
    with SimServer(source=iter(itertools.islice(market, 200_000)), speed=20.0) as server:
        yield server


def _stream(sim, name: str, received: list) -> ManagedStream:
    target = ExchangeTarget(base_url=sim.base_url)
    channel = "private" if name == "private" else "linear"
    stream = ManagedStream(
        name,
        factory=socket_factory(target, channel, ping_interval=2, ping_timeout=1, retries=2),
        subscribe=private_subscriber if name == "private" else public_subscriber(["BTCUSDT"]),
        sink=lambda stream_name, message: received.append(message),
        rebuild_after_ms=500,
    )
    stream.start()
    wait_until(lambda: stream.check().connected, timeout=10, what=f"{name} stream connected")
    return stream


def test_a_malformed_frame_is_reported_and_the_stream_keeps_delivering(sim):
    received: list = []
    stream = _stream(sim, "public", received)
    try:
        wait_until(lambda: any("topic" in m for m in received), timeout=10, what="market data")
        SimControl(sim.base_url, token=sim.token).inject("ws_malformed", stream="public")
        wait_until(lambda: stream.hostile_messages == 1, timeout=5, what="the malformed frame counted")
        before = len(received)
        wait_until(lambda: len(received) > before + 5, timeout=10, what="data after the malformed frame")
        assert stream.is_connected() and stream.status.rebuilds == 0
        assert "not JSON" in stream.status.errors[-1]
    finally:
        stream.close()


@pytest.mark.slow  # waits out two seconds of refused reconnects
def test_a_stream_pybit_gave_up_on_is_rebuilt_and_counted(sim):
    received: list = []
    stream = _stream(sim, "private", received)
    control = SimControl(sim.base_url, token=sim.token)
    try:
        opens = stream.status.opens
        # Refuse reconnects long enough for pybit's retries to run out: it stops for good, silently.
        control.inject("ws_refuse", stream="private", duration_s=2.0)
        control.inject("ws_drop", stream="private", mode="abort")
        wait_until(lambda: not stream.check().connected, timeout=10, what="private stream down")
        wait_until(
            lambda: stream.check().connected and stream.status.rebuilds >= 1,
            timeout=20,
            what="the product rebuilding the stream",
        )
        assert stream.status.opens > opens
    finally:
        stream.close()


@pytest.mark.slow  # waits for pybit to give up, then out one build bound
def test_a_build_stuck_in_pybits_subscribe_is_abandoned_and_a_fresh_client_built(sim):
    """Once pybit gave up reconnecting, its subscribe waits for ever: the build bound ends that wait."""
    control = SimControl(sim.base_url, token=sim.token)
    stuck: list = []

    def subscribe(socket) -> None:
        if not stuck:
            stuck.append(socket)
            # The connection dies before the subscription and pybit's reconnects are refused until it gives up.
            control.inject("ws_refuse", stream="private", duration_s=3.0)
            control.inject("ws_drop", stream="private", mode="abort")
            wait_until(lambda: not socket.is_connected(), timeout=10, what="pybit giving up")
        private_subscriber(socket)  # the real pybit subscribe: the first build waits in it

    stream = ManagedStream(
        "private",
        factory=socket_factory(ExchangeTarget(base_url=sim.base_url), "private", ping_interval=2, ping_timeout=1,
                               retries=2),
        subscribe=subscribe,
        sink=lambda stream_name, message: None,
        rebuild_after_ms=200,
        build_timeout_s=2.0,
    )
    stream.start()
    first_build = stream._building
    try:
        wait_until(lambda: stream.check().connected, timeout=40, interval=0.1, what="a fresh client connected")
        assert stream.abandoned_builds >= 1
        assert any("build abandoned" in error for error in stream.status.errors)
        # The abandoned socket's waits fail from now on, so the stuck thread ends instead of leaking.
        wait_until(lambda: not first_build.is_alive(), timeout=5, what="the stuck build thread ending")
    finally:
        stream.close()


class _Frames:
    """Stands in for pybit's WebSocket behind the mixin: records what the mixin hands on."""

    def __init__(self, *args, **kwargs) -> None:
        self.delivered: list = []

    def callback(self, message) -> None:
        self.delivered.append(message)


def test_hostile_frames_are_reported_with_their_reason_and_market_frames_arrive_typed():
    from trading.exchange.port import StreamStatus
    from trading.exchange.streams import MonitoredSocketMixin
    from trading.marketdata.wire import ParsedLevels

    class Socket(MonitoredSocketMixin, _Frames):
        pass

    hostile: list[str] = []
    socket = Socket(stream_status=StreamStatus(name="public"), on_hostile=hostile.append)
    book = ('{"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":1,'
            '"data":{"s":"BTCUSDT","b":[["100.5","1"]],"a":[["100.6","2"]],"u":1,"seq":1},"cts":1}')
    for frame in ("{oops", '{"ts":' + "9" * 5000 + "}", "[" * 100_000 + "]" * 100_000, "[1,2]",
                  '{"success":true,"ret_msg":"pong","op":"ping"}', book,
                  '{"id":"1","topic":"order","creationTime":1,"data":[{"orderLinkId":"x","price":"1.10"}]}'):
        socket._on_message(frame)  # never raises into pybit's thread, whatever the frame

    reasons = ["not JSON (JSON is malformed", "not JSON (Integer value out of range",
               "not JSON (nested deeper than Python allows)", "not an object"]
    assert len(hostile) == len(reasons)
    assert all(h.startswith(reason) for h, reason in zip(hostile, reasons, strict=True)), hostile
    market, private = socket.delivered
    assert type(market["data"]["b"]) is ParsedLevels and market["data"]["b"] == {100.5: 1.0}
    assert private["data"][0]["price"] == "1.10"  # private messages stay exactly as sent: Decimal strings
