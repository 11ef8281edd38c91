"""DRY_RUN never sends an order, seen where it counts: at the exchange's door.

A recording front on loopback stands where Bybit's address would be and hands
every request on to the simulator behind it. A DRY_RUN exchange port (the
pybit adapter with its real ``HTTP`` session, wrapped by ``DryRunExchange``)
talks to that front; the trading core drives entries, exits and a panic close
through it. The front must see the reads (time, instruments, wallet, orders,
positions) and not one write: Bybit's V5 writes are all POSTs
(``/v5/order/create``, ``/v5/order/amend``, ``/v5/order/cancel*``,
``/v5/position/set-leverage`` ...), its reads all GETs.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from yarl import URL

from failover.domain.clock import SystemClock
from failover.domain.enums import OrderSide
from scalper_site.testkit import wait_until
from trading.domain.config import DEFAULT_CONFIG
from trading.domain.ids import OrderLinkIdFactory
from trading.domain.orders import OrderRequest
from trading.engine.core import TradingCore
from trading.engine.eventlog import EventLog, read_events
from trading.engine.execution import DRY_RUN_NOT_SENT, EXCHANGE_DISAGREES, panic_close_all, sync_from_exchange
from trading.engine.localstate import REJECTED, LocalOrder, NoPersistence
from trading.exchange.connect import SIM, ExchangeTarget, rest_for
from trading.exchange.dryrun import DryRunExchange, OrderNotSent
from trading.exchange.port import BUY, ExchangePort, PlaceOrder
from trading.marketdata.generator import generate_messages
from trading.simexchange.pybit_target import sim_http
from trading.simexchange.server import SimServer
from trading.simexchange.sources import seeded_source
from trading.tests.process_kit import eager_config
from trading.tests.trader.fakes import Control, Gate
from trading.trader.process import Trader, TraderSettings

# Headers that belong to one hop, not to the request being passed on.
HOP_BY_HOP = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "proxy-connection"}
)
# Bybit's V5 paths that change the account (pybit's names for them), and its websocket for orders:
# any of them at the door, or any request but a GET, means DRY_RUN sent a write.
WRITE_PATHS = (
    "/v5/order/create", "/v5/order/amend", "/v5/order/cancel", "/v5/order/disconnected-cancel-all",
    "/v5/position/set-", "/v5/position/trading-stop", "/v5/position/switch-", "/v5/position/add-margin",
    "/v5/position/move-positions", "/v5/position/confirm-pending-mmr", "/v5/trade",
)
READS = frozenset(
    {"get_order", "open_orders", "positions", "executions", "wallet", "instruments", "server_time_ms"}
)


class RecordingFront:
    """A loopback stand-in for the exchange's address: records each request, then passes it to ``upstream``."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.seen: list[tuple[str, str]] = []  # (method, path); "WS" for a socket
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="recording-front", daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RecordingFront:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def writes(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p in list(self.seen) if m not in ("GET", "WS") or p.startswith(WRITE_PATHS)]

    def paths(self, method: str) -> set[str]:
        return {p for m, p in list(self.seen) if m == method}

    async def _serve(self) -> None:
        # The session is made on the front's own loop: aiohttp binds it to the loop it starts on.
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=1 << 20)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, sock).start()
        self.port = sock.getsockname()[1]

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        if request.headers.get("Upgrade", "").lower() == "websocket":
            self.seen.append(("WS", request.path))
            return await self._pipe_socket(request)
        self.seen.append((request.method, request.path))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        # The raw path, untouched: a GET's signature covers its query string byte for byte.
        url = URL(self.upstream + request.raw_path, encoded=True)
        async with self._session.request(request.method, url, headers=headers, data=await request.read()) as answer:
            body = await answer.read()
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
            return web.Response(status=answer.status, body=body, headers=kept)

    async def _pipe_socket(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        down = web.WebSocketResponse()
        await down.prepare(request)
        url = URL(self.upstream.replace("http://", "ws://", 1) + request.raw_path, encoded=True)
        async with self._session.ws_connect(url) as up:

            async def copy(src: Any, dst: Any) -> None:
                async for msg in src:
                    if msg.type == WSMsgType.TEXT:
                        await dst.send_str(msg.data)
                    elif msg.type == WSMsgType.BINARY:
                        await dst.send_bytes(msg.data)
                await dst.close()

            await asyncio.gather(copy(down, up), copy(up, down), return_exceptions=True)
        return down


@pytest.fixture
def sim() -> Iterator[SimServer]:
    server = SimServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def front(sim: SimServer) -> Iterator[RecordingFront]:
    recorder = RecordingFront(sim.base_url).start()
    try:
        yield recorder
    finally:
        recorder.stop()


def warm(sim: SimServer, symbols: list[str]) -> None:
    """Give the simulator a market: books and prices from the seeded generator."""
    messages = list(generate_messages(symbols, 7, int(time.time() * 1000), max_messages=400))

    def play(exchange: Any) -> None:
        for message in messages:
            exchange.play(message)

    sim.call(play)


def dry_run_port(front: RecordingFront) -> DryRunExchange:
    """DRY_RUN's exchange port as the trader builds it, its REST pointed at the front."""
    return DryRunExchange(rest_for(ExchangeTarget(kind=SIM, base_url=front.base_url)))


def test_dry_run_entries_exits_and_panic_close_reach_the_exchange_as_reads_only(tmp_path, sim, front):
    warm(sim, ["BTCUSDT"])
    exchange = dry_run_port(front)
    clock = SystemClock()
    core = TradingCore(
        config=DEFAULT_CONFIG,
        clock=clock,
        instruments=exchange.instruments(["BTCUSDT"]),
        exchange=exchange,
        persistence=NoPersistence(),
        events=EventLog(tmp_path, clock_ms=clock.now_ms),
        safe_mode=lambda: False,
        on_crash=lambda module, exc, details: None,
        ids=OrderLinkIdFactory(clock, instance="dryrun"),
    )
    core.ledger.set_equity(exchange.wallet().equity)
    assert exchange.server_time_ms() > 0
    last = Decimal(sim.call(lambda s: s.describe())["lastPrice"]["BTCUSDT"])

    def enter() -> LocalOrder:
        entry = core.execution.submit_entry(
            OrderRequest(
                symbol="BTCUSDT", side=OrderSide.BUY, reference_price=float(last), stop_distance=float(last) / 200,
                reason="TEST", score=0.9, ts=clock.now_ms(),
            )
        )
        assert entry.success, entry  # risk and sizing passed: the order went as far as the exchange port
        return core.state.orders[entry.order_link_id]

    # A flat account: the pre-entry check reads it, the dry-run port drops the order.
    order = enter()
    assert order.status == REJECTED and order.reject_reason.startswith(DRY_RUN_NOT_SENT)
    assert front.writes() == []

    # Behind the front (as the account's owner might, by hand): a position and a resting order to act on.
    owner = sim_http(sim.base_url, retry_codes={-1}, max_retries=1, timeout=5)
    owner.place_order(category="linear", symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.01")
    owner.place_order(
        category="linear", symbol="BTCUSDT", side="Buy", orderType="Limit", qty="0.01", price=str(int(last * 8 / 10))
    )
    before = sim.call(lambda s: s.describe())
    assert len(before["positions"]) == 1 and len(before["orders"]) == 1

    # The local state does not know the owner's position: the check refuses the entry, as LIVE would.
    order = enter()
    assert order.status == REJECTED and order.reject_reason.startswith(EXCHANGE_DISAGREES)
    assert front.writes() == []

    sync_from_exchange(core.execution)  # the owner's position and order become local state (reads)
    assert "BTCUSDT" in core.state.positions
    exit_result = core.execution.submit_exit("BTCUSDT", reason="TEST_EXIT")
    assert core.state.orders[exit_result.order_link_id].reject_reason.startswith(DRY_RUN_NOT_SENT)
    report = panic_close_all(core.execution)
    assert report["openPositions"] == ["BTCUSDT"] and any("DRY_RUN" in e for e in report["errors"])

    assert front.writes() == []
    assert {
        "/v5/market/time", "/v5/market/instruments-info", "/v5/account/wallet-balance",
        "/v5/order/realtime", "/v5/position/list",
    } <= front.paths("GET")
    after = sim.call(lambda s: s.describe())
    assert (after["positions"], after["orders"]) == (before["positions"], before["orders"])
    events = [e["event"] for e in read_events(tmp_path / "BTCUSDT.jsonl")]
    assert events.count("ORDER_REJECTED") == 3


def test_every_port_write_is_refused_before_the_exchange_and_every_read_reaches_it(sim, front):
    warm(sim, ["BTCUSDT"])
    exchange = dry_run_port(front)
    port_methods = {n for n, _ in inspect.getmembers(ExchangePort, inspect.isfunction) if not n.startswith("_")}
    writes = {
        "place_order": lambda: exchange.place_order(
            PlaceOrder(symbol="BTCUSDT", side=BUY, qty=Decimal("0.01"), order_link_id="DRY-1")
        ),
        "cancel_order": lambda: exchange.cancel_order("BTCUSDT", order_link_id="DRY-1"),
        "cancel_all": lambda: exchange.cancel_all(),
        "set_leverage": lambda: exchange.set_leverage("BTCUSDT", Decimal(5)),
    }
    # A method added to the port must be classified here: a read that reaches the exchange, or a refused write.
    assert port_methods == READS | set(writes)
    for name, call in writes.items():
        with pytest.raises(OrderNotSent):
            call()
        assert front.seen == [], name
    reads: dict[str, Any] = {
        "get_order": lambda: exchange.get_order("BTCUSDT", "DRY-1"),
        "open_orders": lambda: exchange.open_orders("BTCUSDT"),
        "positions": lambda: exchange.positions("BTCUSDT"),
        "executions": lambda: exchange.executions("BTCUSDT"),
        "wallet": exchange.wallet,
        "instruments": lambda: exchange.instruments(["BTCUSDT"]),
        "server_time_ms": exchange.server_time_ms,
    }
    for name, call in reads.items():
        seen = len(front.seen)
        call()
        assert len(front.seen) > seen, f"{name} did not reach the exchange"
    assert front.writes() == []
    # Nothing of the adapter underneath (its pybit session places orders) is reachable through the wrapper.
    assert not hasattr(exchange, "_http")


def test_the_front_sees_a_write_when_one_is_sent(sim, front):
    # The recorder's own check: a write sent by the pybit adapter without the DRY_RUN wrapper is seen.
    warm(sim, ["BTCUSDT"])
    rest = rest_for(ExchangeTarget(kind=SIM, base_url=front.base_url))
    rest.set_leverage("BTCUSDT", Decimal(5))
    assert front.writes() == [("POST", "/v5/position/set-leverage")]




class AgreeingFailover:
    """The FailoverManager's side (another app), agreeing to everything: each report is resolved at once."""

    def __init__(self) -> None:
        self.version = 1

    def environment_register(self, *, run_id: str = "", context: dict) -> None:
        pass

    def failover_gate(self, *, run_id: str = "") -> Gate:
        return Gate(version=self.version)

    def failure_report(self, *, event: Any, run_id: str = "") -> Gate:
        self.version += 1
        return Gate(version=self.version)

    def failure_cleared(self, *, failure_type: str, run_id: str = "") -> Gate:
        self.version += 1
        return Gate(version=self.version)


def dry_run_rejections(events: Path) -> list[dict[str, Any]]:
    return [
        e
        for path in sorted(events.glob("*USDT.jsonl"))
        for e in read_events(path)
        if e["event"] == "ORDER_REJECTED" and e["reason"] == DRY_RUN_NOT_SENT
    ]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_dry_run_trader_acts_on_its_signals_and_no_order_reaches_the_exchange(tmp_path, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # no bus: the listener retries in the background
    eager_config(tmp_path)  # entries within seconds of a moving market
    server = SimServer(source=seeded_source(["BTCUSDT", "ETHUSDT"], 3), speed=20.0).start()
    recorder = RecordingFront(server.base_url).start()
    # DRY_RUN reads live market data: here both its REST and its streams go through the front.
    target = ExchangeTarget(kind=SIM, base_url=recorder.base_url)
    trader = Trader(
        TraderSettings(
            mode="DRY_RUN", symbols=["BTCUSDT", "ETHUSDT"], run_id="dry", data_dir=tmp_path, target=target,
            max_runtime_s=120.0,
        ),
        services=AgreeingFailover(),
        control=Control(),
    )
    running = threading.Thread(target=trader.run, name="trader")
    running.start()
    try:
        wait_until(
            lambda: recorder.writes() or len(dry_run_rejections(tmp_path / "events")) >= 3,
            timeout=60,
            what="three entries stopped by DRY_RUN",
        )
    finally:
        trader.request_stop()
        running.join(timeout=30)
        recorder.stop()
        server.stop()
    assert not running.is_alive()
    assert recorder.writes() == []
    assert {"/v5/market/instruments-info", "/v5/account/wallet-balance", "/v5/position/list"} <= recorder.paths("GET")
    assert recorder.paths("WS") == {"/v5/public/linear", "/v5/private"}
    exchange = server.sim.describe()  # the server is stopped: its state is read in place
    assert exchange["orders"] == [] and exchange["positions"] == [] and exchange["executions"] == 0
