"""What an order request is and the instrument filters it must pass (pure Python)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from trading.marketdata.instruments import InstrumentSpec

from . import errors as E

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

