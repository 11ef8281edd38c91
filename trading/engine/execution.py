"""ExecutionEngine: the only way orders leave the trader, and its REST side.

- Entries pass the SAFE MODE gate and the RiskEngine first; a refusal is a
  returned ``{"success": false, "reason": CODE}``, never an exception.
- Every order gets an ``orderLinkId`` and is recorded durably (INTENT) before
  the request goes out. An ambiguous outcome (timeout, cut connection, 5xx) is
  resolved by looking that id up on the exchange, never by sending it again.
- Exits (reduce-only, closing, panic close) are never blocked.
- The first entry on a symbol after anything that may have left the local
  state behind the exchange (a start, a takeover, a state reload, a resync,
  safe mode) asks the exchange first: a position or a resting order there that
  the local state does not know refuses the entry (it would stack) and is
  reported through the ledger's ``on_mismatch``. Later entries on the symbol trust the
  private stream, so the check costs nothing in steady trading.
- What the exchange reports back (orders, fills, positions, wallet) is the
  ``Ledger``'s: from the private stream, or from ``sync_from_exchange`` over REST.

The engine runs on the trader's single pipeline thread. Exchange calls go
through a ``Dispatcher``: inline in REPLAY and tests, on a gateway thread in
SIM and LIVE, with the outcome handed back to the pipeline thread. A resync and
a panic close call the exchange directly: they are rare, and nothing else may
trade meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from failover.domain.clock import Clock
from failover.domain.enums import OrderSide
from failover.domain.reconcile import exchange_link_id
from trading.domain import reasons
from trading.domain.ids import OrderLinkIdFactory
from trading.domain.orders import OrderRequest
from trading.domain.risk import AccountState, RiskEngine
from trading.domain.statemachine import StateMachine
from trading.engine import crashpoints
from trading.engine.eventlog import SYSTEM, EventLog
from trading.engine.ledger import Ledger
from trading.engine.localstate import CANCELED, INTENT, REJECTED, SUBMITTED, ZERO, LocalOrder, LocalState
from trading.exchange.dryrun import OrderNotSent
from trading.exchange.port import (
    BUY,
    SELL,
    AmbiguousSubmitError,
    DuplicateOrderLinkId,
    ExchangeError,
    ExchangeOrder,
    ExchangePort,
    ExchangePosition,
    OrderAck,
    OrderRejected,
    PlaceOrder,
    TemporaryExchangeError,
)

EXIT_ALREADY_PENDING = "EXIT_ALREADY_PENDING"
NO_POSITION = "NO_POSITION"
EXCHANGE_ERROR = "EXCHANGE_ERROR"
RATE_LIMITED = "RATE_LIMITED"
NOT_FOUND_ON_EXCHANGE = "NOT_FOUND_ON_EXCHANGE"
DRY_RUN_NOT_SENT = "DRY_RUN_NOT_SENT"
EXCHANGE_DISAGREES = "EXCHANGE_DISAGREES"  # the exchange holds what the local state does not know


class EntryNotVerified(ExchangeError):
    """The exchange holds a position or a resting entry order on the symbol that the local state does not know."""

    def __init__(self, kind: str, details: dict[str, Any]) -> None:
        super().__init__(f"{kind.replace('_', ' ').lower()} on {details.get('symbol', '?')}: entry not sent")
        self.kind = kind
        self.details = details


T = TypeVar("T")


@dataclass(frozen=True)
class ExecResult:
    success: bool
    reason: str
    order_link_id: str = ""
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"success": self.success, "reason": self.reason}
        if self.order_link_id:
            data["orderLinkId"] = self.order_link_id
        if self.message:
            data["message"] = self.message
        return data


class Dispatcher(Protocol):
    def submit(self, call: Callable[[], T], done: Callable[[T | None, BaseException | None], None]) -> None:
        """Run ``call`` somewhere; deliver ``done(result, error)`` on the pipeline thread."""
        ...


class InlineDispatcher:
    """Run exchange calls at once, on the caller's thread (REPLAY, tests)."""

    def submit(self, call: Callable[[], T], done: Callable[[T | None, BaseException | None], None]) -> None:
        try:
            result = call()
        except Exception as exc:
            done(None, exc)
            return
        done(result, None)


EntryGate = Callable[[], str | None]
"""Return the reason entries are globally blocked (SAFE_MODE_ACTIVE, ...) or None."""


@dataclass
class ExecutionEngine:
    exchange: ExchangePort
    state: LocalState
    ledger: Ledger
    risk: RiskEngine
    machine: StateMachine
    ids: OrderLinkIdFactory
    clock: Clock
    events: EventLog
    gate: EntryGate
    dispatcher: Dispatcher = field(default_factory=InlineDispatcher)
    confirm_after_ms: int = 3000
    give_up_after_ms: int = 15000
    _lookups: set[str] = field(default_factory=set)
    _verified: set[str] = field(default_factory=set)  # symbols checked against the exchange since the last doubt

    def distrust(self) -> None:
        """Check every symbol with the exchange again before its next entry (the local state may be behind)."""
        self._verified.clear()

    # -- entries and exits --------------------------------------------------

    def submit_entry(self, request: OrderRequest) -> ExecResult:
        """Open a position for ``request`` unless safe mode or risk refuses it."""
        blocked = self.gate()
        if blocked is not None:
            return self._refuse(request.symbol, blocked, "new entries are blocked")
        decision = self.risk.check_entry(request, AccountState(equity=self.ledger.equity))
        if not decision.allowed:
            return self._refuse(request.symbol, decision.reason, decision.message)
        now = self.clock.now_ms()
        order = LocalOrder(
            order_link_id=self.ids.next_id(),
            symbol=request.symbol,
            side=request.side.value,
            qty=decision.qty,
            take_profit=decision.take_profit_price,
            stop_loss=decision.stop_price,
            expected_price=decision.price,
            purpose="ENTRY",
            created_ms=now,
            updated_ms=now,
        )
        self.state.put_order(order)  # durable before the request leaves
        self.events.write(
            request.symbol,
            "ORDER_REQUEST",
            orderLinkId=order.order_link_id,
            side=order.side,
            qty=order.qty,
            expectedPrice=order.expected_price,
            stopLoss=order.stop_loss,
            takeProfit=order.take_profit,
            reason=request.reason,
            score=round(request.score, 6),
        )
        self._send(order)
        return ExecResult(True, reasons.ALLOWED, order.order_link_id)

    def submit_exit(self, symbol: str, *, reason: str) -> ExecResult:
        """Close ``symbol``'s position with a reduce-only market order; never blocked."""
        position = self.state.positions.get(symbol)
        if position is None:
            return ExecResult(False, NO_POSITION, message=f"no open position on {symbol}")
        pending = [o for o in self.state.open_orders(symbol) if o.reduce_only]
        if pending:
            return ExecResult(True, EXIT_ALREADY_PENDING, pending[0].order_link_id)
        side = OrderSide.opening(position.side).opposite
        self.risk.check_exit(symbol, side, position.qty)  # always allowed; kept for the audit trail
        now = self.clock.now_ms()
        order = LocalOrder(
            order_link_id=self.ids.next_id(),
            symbol=symbol,
            side=side.value,
            qty=position.qty,
            reduce_only=True,
            purpose="EXIT",
            created_ms=now,
            updated_ms=now,
        )
        self.state.put_order(order)
        self.events.write(
            symbol, "EXIT_REQUEST", orderLinkId=order.order_link_id, side=order.side, qty=order.qty, reason=reason
        )
        self._send(order)
        return ExecResult(True, reasons.REDUCE_ONLY_ALLOWED, order.order_link_id)

    def _refuse(self, symbol: str, reason: str, message: str) -> ExecResult:
        self.events.write(symbol, "ORDER_REFUSED", reason=reason, message=message)
        return ExecResult(False, reason, message=message)

    def _send(self, order: LocalOrder) -> None:
        crashpoints.reached(crashpoints.BEFORE_SEND)  # the intent is stored; the request has not left
        request = PlaceOrder(
            symbol=order.symbol,
            side=BUY if order.side == "BUY" else SELL,
            qty=order.qty,
            order_link_id=order.order_link_id,
            order_type=order.order_type,
            price=order.price,
            reduce_only=order.reduce_only,
            take_profit=order.take_profit,
            stop_loss=order.stop_loss,
        )
        check = order.purpose == "ENTRY" and order.symbol not in self._verified
        known = self._known_exchange_ids(order.symbol) if check else frozenset()

        def place() -> OrderAck:
            if check:
                self._verify_entry(request.symbol, known)
            # after_send: the exchange's answer is in, not yet handed back to be processed and stored.
            return crashpoints.passing(crashpoints.AFTER_SEND, self.exchange.place_order(request))

        self.dispatcher.submit(place, lambda ack, error: self._on_submitted(order.order_link_id, ack, error))

    def _known_exchange_ids(self, symbol: str) -> frozenset[str]:
        """The ids (exchange and link) of the symbol's open orders the local state knows, for the gateway."""
        open_orders = self.state.open_orders(symbol)
        return frozenset(({o.order_link_id for o in open_orders} | {o.exchange_order_id for o in open_orders}) - {""})

    def _verify_entry(self, symbol: str, known: frozenset[str]) -> None:
        """On the gateway: refuse an entry the exchange would stack (a position or a resting entry order there
        that the local state did not know when the entry was decided)."""
        held = [p for p in self.exchange.positions(symbol) if p.symbol == symbol and p.size > 0]
        if held:
            raise EntryNotVerified("UNKNOWN_POSITION", {"symbol": symbol, "side": held[0].side,
                                                        "size": str(held[0].size)})
        for remote in self.exchange.open_orders(symbol):
            if remote.symbol == symbol and not remote.reduce_only \
                    and remote.order_id not in known and remote.order_link_id not in known:
                raise EntryNotVerified("UNKNOWN_ORDER", {"symbol": symbol, "orderId": remote.order_id,
                                                         "orderLinkId": remote.order_link_id})

    def _on_submitted(self, link_id: str, ack: OrderAck | None, error: BaseException | None) -> None:
        order = self.state.orders.get(link_id)
        if order is None:
            return
        now = self.clock.now_ms()
        if error is None:
            assert ack is not None  # an answer without an error carries the ack
            if order.purpose == "ENTRY":
                self._verified.add(order.symbol)  # checked before it left; the private stream follows it from here
            if order.status == INTENT:  # the stream may already have moved it further
                self.state.update_order(link_id, status=SUBMITTED, exchange_order_id=ack.order_id, updated_ms=now)
            elif not order.exchange_order_id:
                self.state.update_order(link_id, exchange_order_id=ack.order_id)
            return
        if isinstance(error, (AmbiguousSubmitError, DuplicateOrderLinkId)):
            # The order may exist: find out by its id, never send it again. The stream may already have
            # moved it further (filled): a lost answer never moves it back.
            if order.status == INTENT:
                self.state.update_order(link_id, status=SUBMITTED, updated_ms=now)
            self.events.write(order.symbol, "ORDER_OUTCOME_UNKNOWN", orderLinkId=link_id, error=str(error))
            self._lookup(order)
            return
        self._not_sent(order, error)

    def _not_sent(self, order: LocalOrder, error: BaseException) -> None:
        """The order did not reach the exchange (or the exchange refused it): REJECTED, with the reason."""
        if isinstance(error, EntryNotVerified):
            self._reject(order, EXCHANGE_DISAGREES, str(error))
            if self.ledger.on_mismatch is not None:  # the same report as a stream event nobody made
                self.ledger.on_mismatch(error.kind, error.details)
            return
        if isinstance(error, OrderNotSent):
            reason = DRY_RUN_NOT_SENT
        elif isinstance(error, TemporaryExchangeError):
            reason = RATE_LIMITED
        else:
            reason = EXCHANGE_ERROR
        message = str(error)
        if isinstance(error, OrderRejected):
            message = f"retCode {error.ret_code}: {error.ret_msg}"
        self._reject(order, reason, message)

    def _reject(self, order: LocalOrder, reason: str, message: str) -> None:
        now = self.clock.now_ms()
        self.state.update_order(
            order.order_link_id, status=REJECTED, reject_reason=f"{reason}: {message}"[:200], updated_ms=now
        )
        self.events.write(
            order.symbol, "ORDER_REJECTED", orderLinkId=order.order_link_id, reason=reason, message=message
        )
        if order.purpose == "ENTRY":
            self.machine.on_order_rejected(order.symbol, now)

    # -- resolving what was never confirmed ---------------------------------

    def resolve_unconfirmed(self) -> None:
        """Look up every order the exchange never confirmed (after a crash or a timeout)."""
        now = self.clock.now_ms()
        for order in list(self.state.orders.values()):
            if order.status in (INTENT, SUBMITTED) and now - order.created_ms >= self.confirm_after_ms:
                self._lookup(order)

    def _lookup(self, order: LocalOrder) -> None:
        link_id = order.order_link_id
        if link_id in self._lookups:
            return
        self._lookups.add(link_id)

        def done(found: ExchangeOrder | None, error: BaseException | None) -> None:
            self._lookups.discard(link_id)
            current = self.state.orders.get(link_id)
            if current is None or current.status not in (INTENT, SUBMITTED):
                return
            if error is not None:
                return  # the exchange did not answer; the next resolve pass asks again
            if found is not None:
                self.events.write(
                    current.symbol,
                    "ORDER_FOUND_ON_EXCHANGE",
                    orderLinkId=link_id,
                    status=found.status,
                    orderId=found.order_id,
                )
                self.ledger.apply_order(found)
            elif self.clock.now_ms() - current.created_ms >= self.give_up_after_ms:
                self._reject(current, NOT_FOUND_ON_EXCHANGE, "the exchange never received this order")

        self.dispatcher.submit(lambda: self.exchange.get_order(order.symbol, link_id), done)


def sync_from_exchange(engine: ExecutionEngine) -> dict[str, int]:
    """Apply the exchange's open orders, positions and wallet over REST (after a reconnect)."""
    exchange, state, ledger = engine.exchange, engine.state, engine.ledger
    remote_orders = exchange.open_orders()
    remote_positions = {p.symbol: p for p in exchange.positions()}
    for remote in remote_orders:
        ledger.apply_order(remote)
    remote_open = {o.order_link_id for o in remote_orders} | {o.order_id for o in remote_orders}
    for local in state.open_orders():
        if local.status == INTENT or (local.status == SUBMITTED and not local.exchange_order_id):
            continue  # in flight, never acknowledged: resolve_unconfirmed owns these
        if local.order_link_id not in remote_open and local.exchange_order_id not in remote_open:
            # Gone from the open list: its final state (filled, cancelled) is the exchange's, never a guess.
            found = exchange.get_order(local.symbol, exchange_link_id(local.order_link_id),
                                       order_id=local.exchange_order_id or "")
            if found is not None:
                ledger.apply_order(found)
            else:
                state.update_order(local.order_link_id, status=CANCELED, updated_ms=engine.clock.now_ms())
    for symbol in list(state.positions):
        if symbol not in remote_positions:
            flat = ExchangePosition(
                symbol=symbol, side="", size=ZERO, avg_price=ZERO, leverage=ZERO, unrealised_pnl=ZERO, mark_price=ZERO
            )
            ledger.apply_position(flat)
    for position in remote_positions.values():
        ledger.apply_position(position)
    ledger.set_equity(exchange.wallet().equity)
    return {"orders": len(remote_orders), "positions": len(remote_positions)}


def panic_close_all(engine: ExecutionEngine, *, attempts: int = 3) -> dict[str, Any]:
    """Cancel every open order and close every position with reduce-only market orders."""
    report: dict[str, Any] = {"canceledOrders": [], "closedPositions": [], "errors": []}
    for attempt in range(attempts):
        try:
            report["canceledOrders"].extend(engine.exchange.cancel_all())
            positions = engine.exchange.positions()
        except ExchangeError as exc:
            report["errors"].append(f"attempt {attempt + 1}: {exc}")
            continue
        if not positions:
            break
        for remote in positions:
            _close_at_market(engine, remote, report)
    try:
        sync_from_exchange(engine)
        still_open = [p.symbol for p in engine.exchange.positions()]
    except ExchangeError as exc:
        report["errors"].append(f"final check: {exc}")
        still_open = sorted(engine.state.positions)
    equity = engine.ledger.equity
    report["openPositions"] = still_open
    report["success"] = not still_open
    report["dailyPnl"] = engine.risk.daily_pnl
    report["heatPct"] = engine.risk.heat_pct(equity) if equity > 0 else ZERO
    engine.events.write(SYSTEM, "PANIC_CLOSE", **report)
    return report


def _close_at_market(engine: ExecutionEngine, remote: ExchangePosition, report: dict[str, Any]) -> None:
    link_id = engine.ids.next_id()
    side = SELL if remote.side == BUY else BUY
    now = engine.clock.now_ms()
    engine.state.put_order(
        LocalOrder(
            order_link_id=link_id,
            symbol=remote.symbol,
            side="BUY" if side == BUY else "SELL",
            qty=remote.size,
            reduce_only=True,
            purpose="PANIC_CLOSE",
            created_ms=now,
            updated_ms=now,
        )
    )
    try:
        ack = engine.exchange.place_order(
            PlaceOrder(symbol=remote.symbol, side=side, qty=remote.size, order_link_id=link_id, reduce_only=True)
        )
        # The answer confirms it: SUBMITTED with its id, so it is neither looked up as unconfirmed later nor
        # skipped by the final resync (the stream or that resync moves it on).
        current = engine.state.orders.get(link_id)
        if current is not None and current.status == INTENT:
            engine.state.update_order(link_id, status=SUBMITTED, exchange_order_id=ack.order_id,
                                      updated_ms=engine.clock.now_ms())
        report["closedPositions"].append(remote.symbol)
    except ExchangeError as exc:
        report["errors"].append(f"{remote.symbol}: {exc}")
