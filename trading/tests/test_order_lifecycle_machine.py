"""The order lifecycle as a state machine: any sequence of steps ends with local state equal to the exchange's.

Hypothesis drives a trader process (the real ExecutionEngine, Ledger and
local state on the database, the pybit adapter, the gateway thread, the
private stream; see ``lifecycle_support``) against the Bybit V5 simulator
running in this process. Each rule is one thing that happens to a trader:
an entry or an exit, an answer lost on the wire, the market filling orders
fully or in part, a panic close, orders and positions changed behind its back,
a private stream that drops and misses events, a crash and restart.

After every step that ends in a resync (the REST resync, the startup resync
of a new process, a panic close) the engine's own resolution of unconfirmed
orders is driven to completion, and then local open orders must be the
exchange's open orders (by orderId, orderLinkId and filled quantity), local
positions the exchange's (symbol, side, size), and no orderLinkId may name two
orders in the exchange's history. Always: the engine never sent one
orderLinkId twice, and no module crashed.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from failover.domain.clock import ManualClock
from failover.domain.enums import OrderSide
from scalper_site.testkit import wait_until
from trading.domain.orders import OrderRequest
from trading.engine.execution import panic_close_all, sync_from_exchange
from trading.marketdata.instruments import DEFAULT_INSTRUMENTS
from trading.simexchange.control import SimControl, SimControlError
from trading.simexchange.server import SimServer
from trading.tests.lifecycle_support import (
    ExchangeTruth,
    TraderProcess,
    differences,
    final_state_differences,
    repeated,
)
from trading.tests.sim.conftest import BTC_ASKS, BTC_BIDS, ETH_ASKS, ETH_BIDS

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
MID = {"BTCUSDT": Decimal("50000.5"), "ETHUSDT": Decimal("3000.50")}
BOOKS = {"BTCUSDT": (BTC_BIDS, BTC_ASKS), "ETHUSDT": (ETH_BIDS, ETH_ASKS)}
# One thin level a side: market orders fill in part and the rest is cancelled, as Bybit does.
THIN_BOOKS = {
    "BTCUSDT": ([("50000.0", "0.004")], [("50001.0", "0.004")]),
    "ETHUSDT": ([("3000.00", "0.06")], [("3001.00", "0.06")]),
}
EXTERNAL_QTY = {"BTCUSDT": "0.01", "ETHUSDT": "0.1"}
RESTING_OFFSET = Decimal("0.01")  # orders placed behind the trader's back rest 1 % away from the mid
# Public trades, as fractions of the mid: "touch" prints at both resting levels for half a resting order each
# (partial fills); "below" and "above" print through them (whole fills) and set off the entries' stops and take
# profits (0.3 % to 1.2 % and twice that away).
TOUCH = (1 - RESTING_OFFSET, 1 + RESTING_OFFSET)
THROUGH = {"below": Decimal("0.98"), "above": Decimal("1.02")}
MARKET_MOVES = ["thin_book", "full_book", "touch", *THROUGH]
BEHIND_BACK = ["rest_orders", "fill_order", "cancel_order", "open_long", "open_short", "close_position"]
AWAY = ["nothing", *THROUGH, *BEHIND_BACK]  # what happens while the trader is not listening
STOP_BPS = [30, 60, 120]
SUBMIT_FAULTS = {
    "answer_dropped": ("ambiguous_submit", {"mode": "drop"}),
    "answer_held_then_dropped": ("ambiguous_submit", {"mode": "hang", "hold_s": 0.2}),
    "server_error": ("http_error", {"status": 503, "path": "/v5/order/create"}),
    "rate_limited": ("rate_limit", {"path": "/v5/order/create"}),
}
CRASHED_ENTRY = ["none", "intent_stored", "answer_unhandled"]
REFUSE_RECONNECT_S = 0.3
RECONNECT_BOUND_S = 20.0
RESOLVE_ROUNDS = 4

symbols = st.sampled_from(SYMBOLS)
sides = st.sampled_from(["Buy", "Sell"])
_runs = itertools.count(1)


def price_at(symbol: str, fraction: Decimal) -> Decimal:
    tick = DEFAULT_INSTRUMENTS[symbol].tick_size  # the simulator's instruments
    return (MID[symbol] * fraction / tick).to_integral_value(rounding=ROUND_DOWN) * tick


class OrderLifecycle(RuleBasedStateMachine):
    """One trader's orders and positions against the simulator, whatever happens in whatever order."""

    sim: ClassVar[SimServer]
    control: ClassVar[SimControl]
    truth: ClassVar[ExchangeTruth]
    folder: ClassVar[Path]

    def __init__(self) -> None:
        super().__init__()
        self.control.reset()
        for symbol in SYMBOLS:
            self.control.set_book(symbol, *BOOKS[symbol])
            self.control.trade(symbol, str(MID[symbol]), "0.001")
        self.run_id = f"lifecycle-{next(_runs)}"
        self.clock = ManualClock(time.time_ns() // 1_000_000)
        self.sent: list[str] = []  # every orderLinkId the engine's adapter put on the wire
        self.process = self._start_process()

    def teardown(self) -> None:
        self.process.crash()

    # -- the trader's own steps -------------------------------------------------

    @rule(symbol=symbols, side=sides, stop_bps=st.sampled_from(STOP_BPS), then_resync=st.booleans())
    def enter(self, symbol: str, side: str, stop_bps: int, then_resync: bool) -> None:
        self.process.core.execution.submit_entry(self._request(symbol, side, stop_bps))
        self._settle(then_resync)

    @rule(symbol=symbols, then_resync=st.booleans())
    def exit(self, symbol: str, then_resync: bool) -> None:
        self.process.core.execution.submit_exit(symbol, reason="LIFECYCLE_TEST")
        self._settle(then_resync)

    @rule()
    def panic_close(self) -> None:
        """The engine's cancel: every open order cancelled, every position closed; it ends in a resync."""
        panic_close_all(self.process.core.execution)
        self.process.settle()
        self._resolve_and_check()

    @rule()
    def resync(self) -> None:
        """The REST resync (after a reconnect, or a recovery step)."""
        self._resync_and_check()

    # -- the wire, the market, behind the trader's back -------------------------------

    @rule(how=st.sampled_from(sorted(SUBMIT_FAULTS)))
    def next_submit_fails(self, how: str) -> None:
        """The next order create goes wrong: its answer is lost (at once, or after the fills were pushed), or the
        exchange refuses it with a server error or a rate limit."""
        kind, params = SUBMIT_FAULTS[how]
        self.control.inject(kind, count=1, **params)

    @rule(symbol=symbols, move=st.sampled_from(MARKET_MOVES), then_resync=st.booleans())
    def market(self, symbol: str, move: str, then_resync: bool) -> None:
        """The book thins out or fills up again, or a public trade fills resting orders and sets off stops."""
        self._change_exchange(symbol, move, None)
        self._settle(then_resync)

    @rule(symbol=symbols, action=st.sampled_from(BEHIND_BACK), then_resync=st.booleans(), data=st.data())
    def behind_back(self, symbol: str, action: str, then_resync: bool, data: st.DataObject) -> None:
        """Someone else trades the account: an order rests, a position opens or closes, an order is cancelled."""
        self._change_exchange(symbol, action, data)
        self._settle(then_resync)

    # -- the stream and the process -----------------------------------------------

    @rule(symbol=symbols, missed=st.sampled_from(AWAY), entry_while_down=st.booleans(), data=st.data())
    def private_stream_drops(self, symbol: str, missed: str, entry_while_down: bool, data: st.DataObject) -> None:
        """The private stream drops and stays down a moment; what happens meanwhile it never delivers."""
        process = self.process
        opens = process.stream.status.opens
        self.control.inject("ws_refuse", stream="private", duration_s=REFUSE_RECONNECT_S)
        self.control.inject("ws_drop", stream="private", mode="abort")
        wait_until(lambda: not process.stream.check().connected, timeout=RECONNECT_BOUND_S, interval=0.01,
                   what="the private stream down")
        if entry_while_down:
            process.core.execution.submit_entry(self._request(symbol, "Buy", STOP_BPS[0]))
        self._change_exchange(symbol, missed, data)
        process.settle()
        wait_until(lambda: process.reconnected(opens), timeout=RECONNECT_BOUND_S, interval=0.01,
                   what="the private stream back and subscribed")
        self._resync_and_check()  # what the trader does when its private stream opened again

    @rule(symbol=symbols, missed=st.sampled_from(AWAY), entry=st.sampled_from(CRASHED_ENTRY), data=st.data())
    def restart(self, symbol: str, missed: str, entry: str, data: st.DataObject) -> None:
        """The process dies (maybe with an entry's intent stored and the request not sent, or sent and its answer
        not handled), the exchange moves on meanwhile, and a new process starts from the database and resyncs."""
        if entry == "intent_stored":
            self.process.pipeline.dying = True
        if entry != "none":
            self.process.core.execution.submit_entry(self._request(symbol, "Sell", STOP_BPS[0]))
        self.process.crash()
        self._change_exchange(symbol, missed, data)
        self.process = self._start_process()
        self._resync_and_check()  # the startup resync: the new process converges with the exchange

    # -- always -------------------------------------------------------------------------

    @invariant()
    def no_order_link_id_sent_twice(self) -> None:
        assert repeated(self.sent) == [], f"orderLinkIds sent more than once: {repeated(self.sent)}"

    @invariant()
    def no_module_crashed(self) -> None:
        assert self.process.crashes == [], self.process.crashes

    # -- helpers ------------------------------------------------------------------------

    def _start_process(self) -> TraderProcess:
        return TraderProcess.start(self.sim, run_id=self.run_id, clock=self.clock,
                                   events_dir=self.folder / self.run_id, sent=self.sent, symbols=SYMBOLS)

    def _request(self, symbol: str, side: str, stop_bps: int) -> OrderRequest:
        mid = float(MID[symbol])
        return OrderRequest(symbol=symbol, side=OrderSide.BUY if side == "Buy" else OrderSide.SELL,
                            reference_price=mid, stop_distance=mid * stop_bps / 10_000, reason="LIFECYCLE_TEST",
                            score=0.9, ts=self.clock.now_ms())

    def _change_exchange(self, symbol: str, change: str, data: st.DataObject | None) -> None:
        """Move the market or act behind the trader's back; a refusal by the exchange changes nothing."""
        try:
            if change in MARKET_MOVES:
                self._move_market(symbol, change)
            elif change in ("fill_order", "cancel_order") and data is not None:
                self._fill_or_cancel(symbol, change, data)
            elif change == "close_position":
                self.control.close_position(symbol)
            elif change == "rest_orders":
                for side, fraction in zip(("Buy", "Sell"), TOUCH, strict=True):
                    self.control.place_order(symbol, side, EXTERNAL_QTY[symbol], order_type="Limit",
                                             price=str(price_at(symbol, fraction)))
            elif change in ("open_long", "open_short"):
                self.control.open_position(symbol, "Buy" if change == "open_long" else "Sell", EXTERNAL_QTY[symbol])
        except SimControlError:
            pass  # no position to close, an order already gone

    def _move_market(self, symbol: str, move: str) -> None:
        half_of_a_resting_order = str(Decimal(EXTERNAL_QTY[symbol]) / 2)
        if move in ("thin_book", "full_book"):
            self.control.set_book(symbol, *(THIN_BOOKS if move == "thin_book" else BOOKS)[symbol])
            if move == "full_book":
                self.control.trade(symbol, str(MID[symbol]), half_of_a_resting_order)  # the last price back home
        elif move == "touch":
            for fraction in TOUCH:
                self.control.trade(symbol, str(price_at(symbol, fraction)), half_of_a_resting_order)
        else:
            self.control.trade(symbol, str(price_at(symbol, THROUGH[move])), half_of_a_resting_order)

    def _fill_or_cancel(self, symbol: str, change: str, data: st.DataObject) -> None:
        """Fill (in part or whole) or cancel one open order of ``symbol``, as a counterparty or its owner would."""
        # Ordered by what the orders are, not by their random ids, so a replayed example picks the same one.
        orders = sorted((o for o in self.truth.open_orders() if o.symbol == symbol),
                        key=lambda o: (o.side, o.order_type, o.price, o.order_link_id, o.created_ms))
        if not orders:
            return
        order = orders[data.draw(st.integers(0, len(orders) - 1), label="order")]
        if change == "cancel_order":
            self.control.cancel_order(symbol, order_id=order.order_id)
        elif data.draw(st.booleans(), label="whole"):
            self.control.fill_order(symbol, order_id=order.order_id)
        else:
            self.control.fill_order(symbol, order_id=order.order_id, qty=str(Decimal(EXTERNAL_QTY[symbol]) / 2))

    def _settle(self, then_resync: bool) -> None:
        """Let the step's answers and stream messages in; with ``then_resync`` the REST resync follows."""
        if then_resync:
            self._resync_and_check()
        else:
            self.process.settle()

    def _resync_and_check(self) -> None:
        self.process.settle()
        sync_from_exchange(self.process.core.execution)
        self._resolve_and_check()

    def _resolve_and_check(self) -> None:
        """Drive the resolution of unconfirmed orders to its end, then hold local state against the exchange."""
        process = self.process
        for _ in range(RESOLVE_ROUNDS):
            if not process.unconfirmed():
                break
            self.clock.advance(process.core.execution.give_up_after_ms)
            process.core.tick()
            process.settle()
        history = self.truth.order_history()
        found = differences(process.core.state, self.truth.open_orders(), self.truth.positions())
        found += final_state_differences(process.core.state, history)
        assert found == [], "local state differs from the exchange after a resync:\n  " + "\n  ".join(found)
        reused = repeated([x.order_link_id for x in history if x.order_link_id])
        assert reused == [], f"orderLinkIds on more than one exchange order: {reused}"


FAST = settings(
    max_examples=4,
    stateful_step_count=10,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LONG = settings(FAST, max_examples=20, stateful_step_count=40)


@pytest.fixture
def lifecycle(tmp_path: Path) -> Iterator[type[OrderLifecycle]]:
    """The machine bound to a simulator of its own."""
    with SimServer() as sim:
        control = SimControl(sim.base_url, token=sim.token)
        machine = type("BoundOrderLifecycle", (OrderLifecycle,), {
            "sim": sim, "control": control, "truth": ExchangeTruth(sim.base_url), "folder": tmp_path,
        })
        yield machine


@pytest.mark.django_db
def test_local_state_equals_the_exchange_after_every_resync(lifecycle: type[OrderLifecycle]) -> None:
    run_state_machine_as_test(lifecycle, settings=FAST)


@pytest.mark.slow
@pytest.mark.django_db
def test_local_state_equals_the_exchange_after_every_resync_over_long_runs(lifecycle: type[OrderLifecycle]) -> None:
    run_state_machine_as_test(lifecycle, settings=LONG)
