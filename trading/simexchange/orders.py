"""What an order request is and the checks it must pass before the exchange accepts it (pure Python).

Every check raises the ExchangeError Bybit would answer and changes nothing, so
a refused request leaves the account as it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING

from trading.marketdata.instruments import InstrumentSpec

from . import errors as E

if TYPE_CHECKING:
    from .account import Account

LINK_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,36}$")
TIME_IN_FORCE = ("GTC", "IOC", "FOK", "PostOnly")
PRICE_BAND = Decimal("0.10")  # limit prices farther than 10 % from the mark are refused (110003)


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A validated-shape order as the REST layer parsed it."""

    symbol: str
    side: str
    order_type: str
    qty: Decimal
    price: Decimal | None = None
    time_in_force: str | None = None
    link_id: str = ""
    reduce_only: bool = False
    close_on_trigger: bool = False
    take_profit: Decimal | None = None
    stop_loss: Decimal | None = None
    position_idx: int = 0


def validate_qty(spec: InstrumentSpec, qty: Decimal) -> None:
    """Check a quantity against the lot filter; raise 110017 or 10001."""
    if qty <= 0:
        raise E.param_error("params error: qty invalid")
    if qty < spec.qty_step:
        raise E.ExchangeError(E.REDUCE_ONLY_NOT_SATISFIED, "orderQty will be truncated to zero.")
    if qty % spec.qty_step:
        raise E.param_error("Qty invalid: not a multiple of qtyStep")
    if qty < spec.min_qty:
        raise E.param_error("The number of contracts exceeds minimum limit allowed")
    if qty > spec.max_qty:
        raise E.param_error("The number of contracts exceeds maximum limit allowed")


def max_price(spec: InstrumentSpec) -> Decimal:
    """The instrument's maxPrice filter: twenty times its reference price, on the tick grid."""
    return (spec.start_price * 20 / spec.tick_size).quantize(Decimal(1), rounding=ROUND_DOWN) * spec.tick_size



def validate_order(account: Account, req: OrderRequest) -> tuple[InstrumentSpec, Decimal]:
    """Check a new order's parameters and price; return its instrument and the price that sizes its margin."""
    spec = account.spec(req.symbol)
    if req.side not in ("Buy", "Sell"):
        raise E.param_error("params error: side invalid")
    if req.order_type not in ("Market", "Limit"):
        raise E.param_error("params error: orderType invalid")
    if req.position_idx != 0:
        raise E.param_error("position idx not match position mode")
    if req.time_in_force is not None and req.time_in_force not in TIME_IN_FORCE:
        raise E.param_error("params error: timeInForce invalid")
    if req.link_id and not LINK_ID_RE.match(req.link_id):
        raise E.param_error("params error: orderLinkId invalid")
    if req.link_id and req.link_id in account.link_ids:
        raise E.ExchangeError(E.ORDER_LINK_ID_DUPLICATE, "OrderLinkedID is duplicate")
    validate_qty(spec, req.qty)
    price = validate_price(account, spec, req)
    for name, trigger in (("takeProfit", req.take_profit), ("stopLoss", req.stop_loss)):
        if trigger is not None and (trigger <= 0 or trigger % spec.tick_size):
            raise E.param_error(f"params error: {name} invalid")
    return spec, price


def validate_price(account: Account, spec: InstrumentSpec, req: OrderRequest) -> Decimal:
    """Check the limit price; return the price used to size margin."""
    mark = account.mark_price(req.symbol)
    if req.order_type == "Market":
        book = account.books[req.symbol]
        best = book.best_ask() if req.side == "Buy" else book.best_bid()
        ref = best[0] if best else mark
        if ref is None:
            raise E.ExchangeError(E.PRICE_OUT_OF_RANGE, "no market price for a market order")
        return ref
    if req.price is None:
        raise E.param_error("params error: price is required for a limit order")
    if req.price <= 0 or req.price % spec.tick_size:
        raise E.param_error("params error: price invalid")
    if req.price > max_price(spec):
        raise E.ExchangeError(E.PRICE_OUT_OF_RANGE, "Order price is out of permissible range")
    if mark is not None:
        if req.side == "Buy" and req.price > mark * (1 + PRICE_BAND):
            raise E.ExchangeError(E.PRICE_OUT_OF_RANGE, "The order price is higher than the maximum buy price")
        if req.side == "Sell" and req.price < mark * (1 - PRICE_BAND):
            raise E.ExchangeError(E.PRICE_OUT_OF_RANGE, "The order price is lower than the minimum sell price")
    return req.price


def check_margin(
    account: Account, req: OrderRequest, ref_price: Decimal, spec: InstrumentSpec, *, taker_fee: Decimal
) -> None:
    """Refuse an order whose opening part needs more margin (and taker fee) than the account has available."""
    pos = account.position(req.symbol)
    signed = req.qty if req.side == "Buy" else -req.qty
    # Only the part of the order that opens or grows the position needs margin.
    opening = req.qty if pos.size * signed >= 0 else max(Decimal(0), req.qty - abs(pos.size))
    if opening <= 0:
        return
    notional = opening * ref_price
    if notional < spec.min_notional and pos.size == 0:
        raise E.ExchangeError(E.NOTIONAL_TOO_LOW, "The order value is below the minimum order value")
    need = notional / pos.leverage + notional * taker_fee
    if need > account.available():
        raise E.ExchangeError(E.INSUFFICIENT_AVAILABLE, "ab not enough for new order")
