"""A trader "process" against the in-process simulator, and the exchange's truth to hold it against.

A ``TraderProcess`` is what ``trading/trader/process.py`` builds, minus the
failover side: the trading core on the pybit adapter (SIM) with the database as
its persistence, the gateway thread, the private stream, and the one queue its
pipeline thread drains (here the test's own thread). Throwing a process away
without draining its queue is a crash: answers and stream messages it had not
handled are lost, what it had stored is in the database for the next one.

``ExchangeTruth`` reads the simulator over its REST API with a client of its
own; ``differences`` and ``final_state_differences`` say where the engine's
local state and the exchange disagree after a resync.
"""

from __future__ import annotations

import itertools
import json
import queue
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from requests.adapters import HTTPAdapter

from failover.domain.clock import ManualClock
from scalper_site.testkit import wait_until
from trading.domain.config import DEFAULT_CONFIG, TradingConfig
from trading.domain.ids import OrderLinkIdFactory, base36
from trading.engine.core import TradingCore
from trading.engine.eventlog import EventLog
from trading.engine.localstate import INTENT, SUBMITTED, LocalState, local_status
from trading.exchange.connect import ExchangeTarget, socket_factory
from trading.exchange.port import BUY, ExchangeOrder, ExchangePosition
from trading.exchange.pybit_rest import PybitRest, parse_order, pybit_http_kwargs
from trading.exchange.streams import ManagedStream, private_subscriber
from trading.persistence import DatabasePersistence
from trading.simexchange.pybit_target import sim_http
from trading.simexchange.server import SimServer
from trading.trader.gateway import GatewayDispatcher

PRIVATE_TOPICS = frozenset({"order", "execution", "position", "wallet"})
SETTLE_QUIET_S = 0.025  # nothing in flight, nothing queued at the exchange, nothing arrived for this long
SETTLE_BOUND_S = 10.0  # above pybit's 5 s request timeout: a lost answer is an error well within it
MAX_HISTORY_PAGES = 100

# Entries keep flowing through a long run: no daily loss stop, no symbol blocked for its slippage.
LIFECYCLE_CONFIG = DEFAULT_CONFIG.model_copy(
    update={
        "risk": DEFAULT_CONFIG.risk.model_copy(update={"daily_loss_limit_pct": 100.0}),
        "quality": DEFAULT_CONFIG.quality.model_copy(update={"quality_threshold": 0.0}),
    }
)

_process_numbers = itertools.count(1)


def new_instance() -> str:
    """Return the id-factory instance of a new process: unique in this test run, as a new pid and start time are."""
    return "lc" + base36(next(_process_numbers), 6)


class SentOrders(HTTPAdapter):
    """A transport adapter that notes the orderLinkId of every order create it sends, then sends it."""

    def __init__(self, sent: list[str]) -> None:
        super().__init__()
        self.sent = sent

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        if request.method == "POST" and request.path_url.startswith("/v5/order/create"):
            body = request.body.decode() if isinstance(request.body, bytes) else request.body
            self.sent.append(str(json.loads(body or "{}").get("orderLinkId", "")))
        return super().send(request, *args, **kwargs)


def recording_rest(base_url: str, sent: list[str]) -> PybitRest:
    """The pybit adapter for the simulator, as ``connect.rest_for`` builds it, with every order create noted."""
    http = sim_http(base_url, **pybit_http_kwargs(timeout_s=5.0))
    http.client.mount("http://", SentOrders(sent))
    return PybitRest(http)


class Pipeline:
    """The trader's one queue and the gateway feeding it; drained on the caller's thread, the pipeline thread."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.gateway = GatewayDispatcher(self.queue.put)
        self.in_flight = 0
        self.dying = False  # set: the process dies before anything more leaves it
        self.on_private: Callable[[dict[str, Any]], None] = lambda message: None
        self.on_crash: Callable[[BaseException], None] = lambda exc: None

    def submit(self, call: Callable[[], Any], done: Callable[[Any, BaseException | None], None]) -> None:
        """The engine's Dispatcher: run ``call`` on the gateway thread, count it until its answer is handled."""
        if self.dying:
            return
        self.in_flight += 1
        self.gateway.submit(call, done)

    def sink(self, name: str, message: dict[str, Any]) -> None:
        """The private stream's sink (pybit's thread): topic messages go on the queue."""
        if "topic" in message:
            self.queue.put(("private", message))

    def pump(self) -> int:
        """Handle what is queued, in arrival order, as the trader's inbox does; return how many items."""
        handled = 0
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return handled
            handled += 1
            if item[0] == "private":
                self.on_private(item[1])
                continue
            _, done, result, error = item
            self.in_flight -= 1
            try:
                done(result, error)
            except Exception as exc:  # the inbox reports a crash of the execution engine and goes on
                self.on_crash(exc)


@dataclass
class TraderProcess:
    """One trader process: the core, its pipeline, its private stream."""

    core: TradingCore
    pipeline: Pipeline
    stream: ManagedStream
    sim: SimServer
    events: EventLog
    crashes: list[str] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        sim: SimServer,
        *,
        run_id: str,
        clock: ManualClock,
        events_dir: Path,
        sent: list[str],
        symbols: list[str],
        config: TradingConfig = LIFECYCLE_CONFIG,
    ) -> TraderProcess:
        """Start as the trader does: the exchange, the core on the database's state, the wallet, the stream."""
        rest = recording_rest(sim.base_url, sent)
        pipeline = Pipeline()
        events = EventLog(events_dir, clock_ms=clock.now_ms)
        crashes: list[str] = []
        core = TradingCore(
            config=config,
            clock=clock,
            instruments=rest.instruments(symbols),
            exchange=rest,
            persistence=DatabasePersistence(run_id),
            events=events,
            safe_mode=lambda: False,
            on_crash=lambda module, exc, details: crashes.append(f"{module}: {details['error']}"),
            ids=OrderLinkIdFactory(clock, instance=new_instance()),
            dispatcher=pipeline,
        )
        process = cls(core=core, pipeline=pipeline, stream=_private_stream(sim, pipeline), sim=sim, events=events,
                      crashes=crashes)
        pipeline.on_private = core.on_private
        pipeline.on_crash = lambda exc: core.report_crash("EXECUTION_ENGINE", exc, "")
        core.state.reload()  # the reload_state command: local truth from the database
        core.ledger.publish_exposure()
        core.ledger.set_equity(rest.wallet().equity)
        process.connect_stream()
        return process

    def connect_stream(self) -> None:
        """Start the private stream; return once the simulator has it authenticated and subscribed."""
        before = {c["connId"] for c in self._private_conns()}
        self.stream.start()
        wait_until(lambda: self._subscribed(exclude=before), timeout=SETTLE_BOUND_S, interval=0.01,
                   what="the private stream subscribed")

    def reconnected(self, opens_before: int) -> bool:
        """Tell whether the private stream opened again after a drop and is subscribed anew."""
        return self.stream.check().connected and self.stream.status.opens > opens_before and self._subscribed()

    def settle(self) -> None:
        """Handle answers and stream messages until nothing is in flight, queued or arriving (bounded)."""
        deadline = time.monotonic() + SETTLE_BOUND_S
        quiet_since: float | None = None
        while True:
            busy = self.pipeline.pump() > 0 or self.pipeline.in_flight > 0
            if not busy and quiet_since is None:
                busy = not self._exchange_sent_everything()
            now = time.monotonic()
            if busy:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= SETTLE_QUIET_S:
                return
            if now > deadline:
                raise AssertionError(f"not settled within {SETTLE_BOUND_S}s: {self.pipeline.in_flight} call(s) open")
            time.sleep(0.002)

    def unconfirmed(self) -> list[str]:
        return [o.order_link_id for o in self.core.state.orders.values() if o.status in (INTENT, SUBMITTED)]

    def crash(self) -> None:
        """Die: the stream goes, the gateway finishes the request it holds, nothing queued is handled."""
        self.stream.close()
        self.pipeline.gateway.stop()
        self.events.close()

    def _private_conns(self) -> list[dict[str, Any]]:
        return self.sim.call(lambda s: [c.describe() for c in s.hub.streams("private")])

    def _subscribed(self, exclude: set[str] | None = None) -> bool:
        return any(
            c["authed"] and set(c["topics"]) >= PRIVATE_TOPICS
            for c in self._private_conns()
            if c["connId"] not in (exclude or set())
        )

    def _exchange_sent_everything(self) -> bool:
        return bool(self.sim.call(lambda s: all(c.queue.empty() for c in s.hub.streams("private"))))


def _private_stream(sim: SimServer, pipeline: Pipeline) -> ManagedStream:
    target = ExchangeTarget(base_url=sim.base_url)
    return ManagedStream(
        "private",
        factory=socket_factory(target, "private", ping_interval=2, ping_timeout=1, retries=3),
        subscribe=private_subscriber,
        sink=pipeline.sink,
        rebuild_after_ms=500,
    )


class ExchangeTruth:
    """The simulator's orders and positions, read over its REST API by a client of its own."""

    def __init__(self, base_url: str) -> None:
        self.http = sim_http(base_url, **pybit_http_kwargs(timeout_s=5.0))
        self.rest = PybitRest(self.http)

    def open_orders(self) -> list[ExchangeOrder]:
        return self.rest.open_orders()

    def positions(self) -> list[ExchangePosition]:
        return self.rest.positions()

    def order_history(self) -> list[ExchangeOrder]:
        """Every order the exchange remembers, open and closed (``GET /v5/order/history``), page after page."""
        orders: list[ExchangeOrder] = []
        cursor = ""
        for _ in range(MAX_HISTORY_PAGES):
            page = self.http.get_order_history(category="linear", limit=50, **({"cursor": cursor} if cursor else {}))
            orders += [parse_order(row) for row in page["result"]["list"]]
            cursor = page["result"].get("nextPageCursor") or ""
            if not cursor:
                return orders
        raise AssertionError(f"order history longer than {MAX_HISTORY_PAGES} pages")


def repeated(values: list[str]) -> list[str]:
    """The values that occur more than once, each named once."""
    return sorted(value for value, count in Counter(values).items() if count > 1)


def differences(state: LocalState, orders: list[ExchangeOrder], positions: list[ExchangePosition]) -> list[str]:
    """Say every way local open orders and positions differ from the exchange's; empty when they agree."""
    found = [f"{o.order_link_id} still unconfirmed ({o.status})" for o in state.open_orders()
             if o.status in (INTENT, SUBMITTED)]
    local_orders = {o.exchange_order_id: o for o in state.open_orders() if o.status not in (INTENT, SUBMITTED)}
    remote_orders = {x.order_id: x for x in orders}
    for order_id in sorted(local_orders.keys() - remote_orders.keys()):
        local = local_orders[order_id]
        found.append(f"open locally only: {local.order_link_id} {local.symbol} {local.status} (orderId {order_id})")
    for order_id in sorted(remote_orders.keys() - local_orders.keys()):
        remote = remote_orders[order_id]
        found.append(f"open on the exchange only: {remote.order_link_id or '-'} {remote.symbol} {remote.status} "
                     f"(orderId {order_id})")
    for order_id in sorted(local_orders.keys() & remote_orders.keys()):
        local, remote = local_orders[order_id], remote_orders[order_id]
        if remote.order_link_id and remote.order_link_id != local.order_link_id:
            found.append(f"orderId {order_id}: orderLinkId {local.order_link_id} here, {remote.order_link_id} there")
        if local.filled_qty != remote.cum_exec_qty:
            found.append(f"{local.order_link_id}: filled {local.filled_qty} here, {remote.cum_exec_qty} there")
    here = {p.symbol: (p.side, p.qty) for p in state.positions.values()}
    there = {p.symbol: ("LONG" if p.side == BUY else "SHORT", p.size) for p in positions}
    found += [f"position {symbol}: {_position(here.get(symbol))} here, {_position(there.get(symbol))} there"
              for symbol in sorted(here.keys() | there.keys()) if here.get(symbol) != there.get(symbol)]
    return found


def final_state_differences(state: LocalState, history: list[ExchangeOrder]) -> list[str]:
    """Say where an order the trader tracks has another status or filled quantity than the exchange's record of
    it (a fill taken for a rejection, a cancel for a fill); empty when every one agrees."""
    by_link = {x.order_link_id: x for x in history if x.order_link_id}
    found = []
    for local in state.orders.values():
        remote = by_link.get(local.order_link_id)
        if remote is None:
            continue  # never reached the exchange (refused, or lost before it left)
        if (local.status, local.filled_qty) != (local_status(remote.status), remote.cum_exec_qty):
            found.append(f"{local.order_link_id} {local.symbol}: {local.status} filled {local.filled_qty} here, "
                         f"{remote.status} filled {remote.cum_exec_qty} there")
    return found


def _position(value: tuple[str, Decimal] | None) -> str:
    return "flat" if value is None else f"{value[0]} {value[1]}"
