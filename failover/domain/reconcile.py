"""Pure diffs between what the process believed and what the exchange says (spec 6).

The exchange is the truth. A diff only says what differs and what is to be
done; the RESYNC steps apply it and store ``to_details()`` as their evidence:
for each difference, what local said, what the exchange said, the difference,
and the action.

Positions are keyed by symbol: the product trades in one-way mode (one open
position per symbol, enforced by the database), so two positions for one symbol
in either list is an error, not something to guess about.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from failover.domain.types import OrderSnapshot, PositionSnapshot

# What the spec names the events (spec 6), and the action each difference asks for.
EXTERNAL_POSITION_RECOVERED = "EXTERNAL_POSITION_RECOVERED"
POSITION_CLOSED_BY_EXCHANGE = "POSITION_CLOSED_BY_EXCHANGE"
POSITION_MISMATCH = "POSITION_MISMATCH"
EXTERNAL_ORDER_RECOVERED = "EXTERNAL_ORDER_RECOVERED"
ORDER_MISSING_ON_EXCHANGE = "ORDER_MISSING_ON_EXCHANGE"
ORDER_MISMATCH = "ORDER_MISMATCH"
ORDER_IN_FLIGHT = "ORDER_IN_FLIGHT"

ADOPT_POSITION = "ADOPT_AS_EXTERNAL_POSITION"
CLOSE_LOCAL_POSITION = "CLOSE_LOCAL_POSITION"
SET_LOCAL_TO_EXCHANGE = "SET_LOCAL_TO_EXCHANGE"
TRACK_ORDER = "TRACK_AS_EXTERNAL_ORDER"
MARK_ORDER_CANCELED = "MARK_LOCAL_ORDER_CANCELED"
LEAVE_UNTOUCHED = "LEAVE_UNTOUCHED"

DEFAULT_QTY_TOLERANCE = 1e-9  # float noise, far below any lot size
EXTERNAL_LINK_PREFIX = "EXT-"


def external_link_id(order_id: str) -> str:
    """Return the local orderLinkId of an exchange order that came without one (placed by someone else)."""
    return f"{EXTERNAL_LINK_PREFIX}{order_id}"[:36]


def exchange_link_id(local_link_id: str) -> str:
    """Return the orderLinkId the exchange knows a local order by: none for one named by ``external_link_id``."""
    return "" if local_link_id.startswith(EXTERNAL_LINK_PREFIX) else local_link_id


def _same_qty(a: float, b: float, tolerance: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=tolerance)


def _entry(kind: str, action: str, symbol: str, local: Any, exchange: Any, difference: dict[str, Any],
           **extra: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "symbol": symbol,
        "local": None if local is None else local.to_dict(),
        "exchange": None if exchange is None else exchange.to_dict(),
        "difference": difference,
        "action": action,
        **extra,
    }


def _change(local: Any, exchange: Any) -> dict[str, Any]:
    change: dict[str, Any] = {"local": local, "exchange": exchange}
    if isinstance(local, int | float) and isinstance(exchange, int | float):
        change["delta"] = round(exchange - local, 12)  # rounded so 0.02 - 0.01 reads 0.01
    return change


@dataclass(frozen=True, slots=True)
class PositionMismatch:
    """One symbol held on both sides with a different side or size: local becomes the exchange's."""

    local: PositionSnapshot
    exchange: PositionSnapshot

    def difference(self, tolerance: float = DEFAULT_QTY_TOLERANCE) -> dict[str, Any]:
        diff: dict[str, Any] = {}
        if self.local.side is not self.exchange.side:
            diff["side"] = _change(self.local.side.value, self.exchange.side.value)
        if not _same_qty(self.local.qty, self.exchange.qty, tolerance):
            diff["qty"] = _change(self.local.qty, self.exchange.qty)
        return diff


@dataclass(frozen=True, slots=True)
class PositionDiff:
    """Positions to adopt, to close, to correct, and those that agree."""

    adopt: tuple[PositionSnapshot, ...]  # only on the exchange: EXTERNAL_POSITION_RECOVERED
    close: tuple[PositionSnapshot, ...]  # only local: closed, POSITION_CLOSED_BY_EXCHANGE
    correct: tuple[PositionMismatch, ...]
    matched: tuple[tuple[PositionSnapshot, PositionSnapshot], ...]  # (local, exchange)
    qty_tolerance: float = DEFAULT_QTY_TOLERANCE

    @property
    def in_sync(self) -> bool:
        return not (self.adopt or self.close or self.correct)

    def to_details(self) -> dict[str, Any]:
        """Return the evidence a RESYNC_POSITIONS step stores."""
        differences = [
            *(_entry(EXTERNAL_POSITION_RECOVERED, ADOPT_POSITION, p.symbol, None, p, {"missing": "local"})
              for p in self.adopt),
            *(_entry(POSITION_CLOSED_BY_EXCHANGE, CLOSE_LOCAL_POSITION, p.symbol, p, None, {"missing": "exchange"})
              for p in self.close),
            *(_entry(POSITION_MISMATCH, SET_LOCAL_TO_EXCHANGE, m.local.symbol, m.local, m.exchange,
                     m.difference(self.qty_tolerance))
              for m in self.correct),
        ]
        return {
            "inSync": self.in_sync,
            "matched": [local.symbol for local, _ in self.matched],
            "differences": differences,
        }


def _by_symbol(positions: Iterable[PositionSnapshot], where: str) -> dict[str, PositionSnapshot]:
    index: dict[str, PositionSnapshot] = {}
    for position in positions:
        if position.symbol in index:
            raise ValueError(f"two {where} positions for {position.symbol}: one-way mode allows one per symbol")
        index[position.symbol] = position
    return index


def diff_positions(
    local: Sequence[PositionSnapshot],
    exchange: Sequence[PositionSnapshot],
    *,
    qty_tolerance: float = DEFAULT_QTY_TOLERANCE,
) -> PositionDiff:
    """Compare local positions with the exchange's, symbol by symbol."""
    mine, theirs = _by_symbol(local, "local"), _by_symbol(exchange, "exchange")
    correct, matched = [], []
    for symbol, position in mine.items():
        other = theirs.get(symbol)
        if other is None:
            continue
        pair = PositionMismatch(position, other)
        if pair.difference(qty_tolerance):
            correct.append(pair)
        else:
            matched.append((position, other))
    return PositionDiff(
        adopt=tuple(p for s, p in theirs.items() if s not in mine),
        close=tuple(p for s, p in mine.items() if s not in theirs),
        correct=tuple(correct),
        matched=tuple(matched),
        qty_tolerance=qty_tolerance,
    )


@dataclass(frozen=True, slots=True)
class OrderMismatch:
    """One order known on both sides whose fields differ: local takes the exchange's values."""

    local: OrderSnapshot
    exchange: OrderSnapshot

    def difference(self, tolerance: float = DEFAULT_QTY_TOLERANCE) -> dict[str, Any]:
        diff: dict[str, Any] = {}
        for name, a, b in (("status", self.local.status.value, self.exchange.status.value),
                           ("side", self.local.side.value, self.exchange.side.value)):
            if a != b:
                diff[name] = _change(a, b)
        numbers = (("qty", self.local.qty, self.exchange.qty), ("price", self.local.price, self.exchange.price))
        for name, x, y in numbers:
            if not _same_qty(x, y, tolerance):
                diff[name] = _change(x, y)
        for name, p, q in (("exchangeOrderId", self.local.exchange_order_id, self.exchange.exchange_order_id),
                           ("clientOrderId", self.local.client_order_id, self.exchange.client_order_id)):
            if q is not None and p != q:  # an id the exchange knows and local lacks (e.g. never acked)
                diff[name] = _change(p, q)
        return diff


@dataclass(frozen=True, slots=True)
class InFlightOrder:
    """A local open order missing on the exchange but younger than the recent-order window."""

    order: OrderSnapshot
    age_ms: int


@dataclass(frozen=True, slots=True)
class OrderDiff:
    """Orders to track, to mark canceled, to correct, to leave alone, and those that agree."""

    adopt: tuple[OrderSnapshot, ...]  # open only on the exchange: EXTERNAL_ORDER_RECOVERED
    cancel: tuple[OrderSnapshot, ...]  # open only locally, older than the window: ORDER_MISSING_ON_EXCHANGE
    correct: tuple[OrderMismatch, ...]
    in_flight: tuple[InFlightOrder, ...]  # too young to judge: the request may not have reached the exchange
    matched: tuple[tuple[OrderSnapshot, OrderSnapshot], ...]  # (local, exchange)
    qty_tolerance: float = DEFAULT_QTY_TOLERANCE

    @property
    def in_sync(self) -> bool:
        """Return True when nothing needs changing; in-flight orders do not count, they are expected."""
        return not (self.adopt or self.cancel or self.correct)

    def to_details(self) -> dict[str, Any]:
        """Return the evidence a RESYNC_ORDERS step stores."""
        differences = [
            *(_entry(EXTERNAL_ORDER_RECOVERED, TRACK_ORDER, o.symbol, None, o, {"missing": "local"})
              for o in self.adopt),
            *(_entry(ORDER_MISSING_ON_EXCHANGE, MARK_ORDER_CANCELED, o.symbol, o, None, {"missing": "exchange"})
              for o in self.cancel),
            *(_entry(ORDER_MISMATCH, SET_LOCAL_TO_EXCHANGE, m.local.symbol, m.local, m.exchange,
                     m.difference(self.qty_tolerance))
              for m in self.correct),
        ]
        in_flight = [
            _entry(ORDER_IN_FLIGHT, LEAVE_UNTOUCHED, f.order.symbol, f.order, None, {"missing": "exchange"},
                   ageMs=f.age_ms)
            for f in self.in_flight
        ]
        return {
            "inSync": self.in_sync,
            "matched": [_order_key(local) for local, _ in self.matched],
            "differences": differences,
            "inFlight": in_flight,
        }


def _order_key(order: OrderSnapshot) -> str:
    return order.exchange_order_id or order.client_order_id or ""


def diff_orders(
    local: Sequence[OrderSnapshot],
    exchange: Sequence[OrderSnapshot],
    *,
    now_ms: int,
    recent_window_ms: int,
    created_ms_of: Callable[[OrderSnapshot], int | None] = lambda order: None,
    qty_tolerance: float = DEFAULT_QTY_TOLERANCE,
) -> OrderDiff:
    """Compare local orders with the exchange's open orders.

    Orders match by ``exchangeOrderId`` first, then by ``clientOrderId`` (the
    orderLinkId the order was sent with), so an order placed but never acked
    still finds its exchange twin. Every local order takes part in matching, so
    one local believes CANCELED but still open on the exchange is corrected, not
    adopted twice. A local open order the exchange lacks is canceled unless
    ``created_ms_of`` says it is younger than ``recent_window_ms``; an order of
    unknown age is treated as old, because a snapshot from a previous process is
    older than any window. Exchange orders that are not open are ignored unless
    they match.
    """
    by_exchange_id: dict[str, int] = {}
    by_client_id: dict[str, int] = {}
    for i, order in enumerate(exchange):
        if order.exchange_order_id is not None:
            by_exchange_id.setdefault(order.exchange_order_id, i)
        if order.client_order_id is not None:
            by_client_id.setdefault(order.client_order_id, i)
    used: set[int] = set()
    correct, matched, cancel, in_flight = [], [], [], []
    for order in local:
        index = None
        if order.exchange_order_id is not None:
            index = by_exchange_id.get(order.exchange_order_id)
        if index is None and order.client_order_id is not None:
            index = by_client_id.get(order.client_order_id)
        if index is not None and index not in used:
            used.add(index)
            pair = OrderMismatch(order, exchange[index])
            if pair.difference(qty_tolerance):
                correct.append(pair)
            else:
                matched.append((order, exchange[index]))
            continue
        if not order.status.is_open:
            continue  # history: the open-orders endpoint is not expected to list it
        created = created_ms_of(order)
        age = None if created is None else now_ms - created
        if age is not None and age < recent_window_ms:
            in_flight.append(InFlightOrder(order, age))
        else:
            cancel.append(order)
    adopt = tuple(o for i, o in enumerate(exchange) if i not in used and o.status.is_open)
    return OrderDiff(adopt=adopt, cancel=tuple(cancel), correct=tuple(correct), in_flight=tuple(in_flight),
                     matched=tuple(matched), qty_tolerance=qty_tolerance)


def is_in_sync(positions: PositionDiff | None = None, orders: OrderDiff | None = None) -> bool:
    """Return True when neither diff asks for a change (what the NON_SYNC_STATE detector checks)."""
    return all(diff is None or diff.in_sync for diff in (positions, orders))
