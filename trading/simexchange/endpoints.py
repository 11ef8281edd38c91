"""The Bybit V5 REST endpoints the simulator serves, as plain functions of (sim, params).

Each returns ``(result, changes)``; ``changes`` is None for reads. Errors are
ExchangeError and leave the state untouched (every check runs before a write).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from . import errors as E
from . import payloads
from .constants import SETTLE_COIN
from .market import KLINE_INTERVALS
from .models import Changes, Order
from .orders import OrderRequest
from .params import Params

if TYPE_CHECKING:
    from .core import SimExchange

Result = tuple[dict[str, Any], Changes | None]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    auth: bool
    handler: Callable[[SimExchange, Params], Result]


def _symbol(sim: SimExchange, p: Params, *, required: bool = True) -> str | None:
    symbol = p.str("symbol", required=required)
    if symbol is not None and symbol not in sim.engine.instruments:
        raise E.param_error(f"params error: symbol invalid: {symbol}")
    return symbol


def _page(items: list[Any], p: Params, *, default: int, hi: int) -> tuple[list[Any], str]:
    """Cut a newest-first list into a page; the cursor is the next offset."""
    limit = p.int("limit", default=default, lo=1, hi=hi) or default
    cursor = p.str("cursor")
    try:
        start = int(cursor) if cursor else 0
    except ValueError:
        raise E.param_error("params error: cursor invalid") from None
    page = items[start:start + limit]
    return page, (str(start + limit) if start + limit < len(items) else "")


# -- market ---------------------------------------------------------------------
def server_time(sim: SimExchange, p: Params) -> Result:
    ns = time.time_ns()
    return {"timeSecond": str(ns // 1_000_000_000), "timeNano": str(ns)}, None


def instruments_info(sim: SimExchange, p: Params) -> Result:
    p.category()
    symbol = _symbol(sim, p, required=False)
    status = p.str("status")
    specs = [s for s in sim.engine.instruments.values() if symbol in (None, s.symbol)]
    if status not in (None, "Trading"):
        specs = []
    page, cursor = _page([payloads.instrument_item(s) for s in specs], p, default=500, hi=1000)
    return {"category": "linear", "list": page, "nextPageCursor": cursor}, None


def tickers(sim: SimExchange, p: Params) -> Result:
    p.category()
    symbol = _symbol(sim, p, required=False)
    symbols = [symbol] if symbol else list(sim.engine.instruments)
    items = []
    for s in symbols:
        t = sim.feed.ticker(s)
        items.append({**t, "predictedDeliveryPrice": "", "basisRate": "", "deliveryFeeRate": "",
                      "deliveryTime": "0", "basis": "", "preOpenPrice": "", "preQty": "",
                      "curPreListingPhase": ""})
    return {"category": "linear", "list": items}, None


def kline(sim: SimExchange, p: Params) -> Result:
    if p.has("category"):
        p.category()
    symbol = _symbol(sim, p)
    assert symbol is not None
    interval = p.str("interval", required=True, choices=KLINE_INTERVALS)
    assert interval is not None
    start = p.int("start")
    end = p.int("end")
    limit = p.int("limit", default=200, lo=1, hi=1000) or 200
    rows = sim.feed.klines(symbol, interval, start, end, limit)
    return {"category": "linear", "symbol": symbol, "list": rows}, None


def orderbook(sim: SimExchange, p: Params) -> Result:
    p.category()
    symbol = _symbol(sim, p)
    assert symbol is not None
    limit = p.int("limit", default=25, lo=1, hi=500) or 25
    book = sim.engine.books[symbol]
    spec = sim.engine.instruments[symbol]

    def side(name: str) -> list[list[str]]:
        return [[payloads.price_str(spec, px), payloads.qty_str(spec, sz)] for px, sz in book.levels(name, limit)]

    now = int(time.time() * 1000)
    return {"s": symbol, "b": side("Buy"), "a": side("Sell"), "ts": book.ts or now, "u": book.u,
            "seq": book.seq, "cts": book.ts or now}, None


# -- trade ----------------------------------------------------------------------
def create_order(sim: SimExchange, p: Params) -> Result:
    p.category()
    symbol = _symbol(sim, p)
    assert symbol is not None
    req = OrderRequest(
        symbol=symbol,
        side=p.str("side", required=True, choices=("Buy", "Sell")) or "",
        order_type=p.str("orderType", required=True, choices=("Market", "Limit")) or "",
        qty=p.decimal("qty", required=True) or Decimal(0),
        price=p.decimal("price"),
        time_in_force=p.str("timeInForce"),
        link_id=p.str("orderLinkId") or "",
        reduce_only=p.bool("reduceOnly"),
        close_on_trigger=p.bool("closeOnTrigger"),
        take_profit=p.decimal("takeProfit") or None,
        stop_loss=p.decimal("stopLoss") or None,
        position_idx=p.int("positionIdx", default=0) or 0,
    )
    order, changes = sim.engine.place_order(req)
    return {"orderId": order.order_id, "orderLinkId": order.link_id}, changes


def _order_ref(p: Params) -> tuple[str | None, str | None]:
    order_id, link_id = p.str("orderId"), p.str("orderLinkId")
    if not order_id and not link_id:
        raise E.param_error("params error: orderId or orderLinkId is required")
    return order_id, link_id


def cancel_order(sim: SimExchange, p: Params) -> Result:
    p.category()
    symbol = _symbol(sim, p)
    assert symbol is not None
    order_id, link_id = _order_ref(p)
    order, changes = sim.engine.cancel_order(symbol, order_id, link_id)
    return {"orderId": order.order_id, "orderLinkId": order.link_id}, changes


def cancel_all(sim: SimExchange, p: Params) -> Result:
    p.category()
    symbol = _symbol(sim, p, required=False)
    base, settle = p.str("baseCoin"), p.str("settleCoin")
    if symbol is None and base is None and settle is None:
        raise E.param_error("params error: symbol, baseCoin or settleCoin is required")
    if settle is not None and settle != SETTLE_COIN:
        raise E.param_error("params error: settleCoin invalid")
    if base is not None and symbol is None:
        symbols = [s.symbol for s in sim.engine.instruments.values() if s.base_coin == base]
        if not symbols:
            raise E.param_error("params error: baseCoin invalid")
        orders: list[Order] = []
        changes = Changes()
        for s in symbols:
            got, ch = sim.engine.cancel_all(s)
            orders += got
            changes.merge(ch)
    else:
        orders, changes = sim.engine.cancel_all(symbol)
    items = [{"orderId": o.order_id, "orderLinkId": o.link_id} for o in orders]
    return {"list": items, "success": "1"}, changes


def amend_order(sim: SimExchange, p: Params) -> Result:
    p.category()
    symbol = _symbol(sim, p)
    assert symbol is not None
    order_id, link_id = _order_ref(p)
    order, changes = sim.engine.amend_order(
        symbol, order_id, link_id,
        qty=p.decimal("qty"), price=p.decimal("price"),
        take_profit=p.decimal("takeProfit"), stop_loss=p.decimal("stopLoss"),
    )
    return {"orderId": order.order_id, "orderLinkId": order.link_id}, changes


def _filter_orders(sim: SimExchange, p: Params, orders: list[Order]) -> list[Order]:
    symbol = _symbol(sim, p, required=False)
    base, settle = p.str("baseCoin"), p.str("settleCoin")
    order_id, link_id = p.str("orderId"), p.str("orderLinkId")
    status = p.str("orderStatus")
    out = []
    for o in orders:
        if symbol and o.symbol != symbol:
            continue
        if base and sim.engine.instruments[o.symbol].base_coin != base:
            continue
        if settle and settle != SETTLE_COIN:
            continue
        if order_id and o.order_id != order_id or link_id and o.link_id != link_id:
            continue
        if status and o.status != status:
            continue
        out.append(o)
    out.sort(key=lambda o: (o.created_ms, o.order_id), reverse=True)
    return out


def open_orders(sim: SimExchange, p: Params) -> Result:
    """GET /v5/order/realtime: open orders; ``openOnly=1`` the recent closed ones.

    Asked by orderId or orderLinkId, the order is returned in any status, so an
    ambiguous submit can be resolved with one call.
    """
    p.category()
    if not (p.has("symbol") or p.has("baseCoin") or p.has("settleCoin")):
        raise E.param_error("params error: symbol, baseCoin or settleCoin is required")
    open_only = p.int("openOnly", default=0, lo=0, hi=2)
    by_id = p.has("orderId") or p.has("orderLinkId")
    orders = list(sim.engine.orders.values())
    if not by_id:
        orders = [o for o in orders if o.is_open == (open_only == 0)]
    page, cursor = _page(_filter_orders(sim, p, orders), p, default=20, hi=50)
    return {"category": "linear", "list": [payloads.order_item(sim.engine, o) for o in page],
            "nextPageCursor": cursor}, None


def order_history(sim: SimExchange, p: Params) -> Result:
    p.category()
    orders = _filter_orders(sim, p, list(sim.engine.orders.values()))
    page, cursor = _page(orders, p, default=20, hi=50)
    return {"category": "linear", "list": [payloads.order_item(sim.engine, o) for o in page],
            "nextPageCursor": cursor}, None


def executions(sim: SimExchange, p: Params) -> Result:
    p.category()
    symbol = _symbol(sim, p, required=False)
    order_id, link_id = p.str("orderId"), p.str("orderLinkId")
    start, end = p.int("startTime"), p.int("endTime")
    exec_type = p.str("execType")
    items = [
        x for x in reversed(sim.engine.executions)
        if (symbol is None or x.symbol == symbol)
        and (order_id is None or x.order_id == order_id)
        and (link_id is None or x.link_id == link_id)
        and (start is None or x.exec_time >= start)
        and (end is None or x.exec_time <= end)
        and exec_type in (None, "Trade")
    ]
    page, cursor = _page(items, p, default=50, hi=100)
    return {"category": "linear", "list": [payloads.execution_item(sim.engine, x) for x in page],
            "nextPageCursor": cursor}, None


# -- position and account -------------------------------------------------------------
def positions(sim: SimExchange, p: Params) -> Result:
    p.category()
    symbol = _symbol(sim, p, required=False)
    settle = p.str("settleCoin")
    if symbol is None and settle is None:
        raise E.param_error("params error: symbol or settleCoin is required")
    if settle is not None and settle != SETTLE_COIN:
        raise E.param_error("params error: settleCoin invalid")
    if symbol is not None:
        # With a symbol Bybit returns the row even when flat; peek without creating it.
        pos = sim.engine.positions.get(symbol)
        rows = [payloads.position_item(sim.engine, pos)] if pos else [_flat_position(sim, symbol)]
    else:
        rows = [payloads.position_item(sim.engine, x) for x in sim.engine.positions.values() if x.size]
    page, cursor = _page(rows, p, default=20, hi=200)
    return {"category": "linear", "list": page, "nextPageCursor": cursor}, None


def _flat_position(sim: SimExchange, symbol: str) -> dict[str, Any]:
    from .constants import DEFAULT_LEVERAGE
    from .models import Position

    return payloads.position_item(sim.engine, Position(symbol=symbol, leverage=DEFAULT_LEVERAGE))


def set_leverage(sim: SimExchange, p: Params) -> Result:
    p.category()
    symbol = _symbol(sim, p)
    assert symbol is not None
    buy = p.decimal("buyLeverage", required=True)
    sell = p.decimal("sellLeverage", required=True)
    assert buy is not None and sell is not None
    changes = sim.engine.set_leverage(symbol, buy, sell)
    return {}, changes


def wallet_balance(sim: SimExchange, p: Params) -> Result:
    account = p.str("accountType", required=True)
    if account != "UNIFIED":
        raise E.param_error("accountType only support UNIFIED")
    coin = p.str("coin")
    item = payloads.wallet_item(sim.engine)
    if coin is not None:
        item["coin"] = [c for c in item["coin"] if c["coin"] in coin.split(",")]
    return {"list": [item]}, None


def set_dcp(sim: SimExchange, p: Params) -> Result:
    """POST /v5/order/disconnected-cancel-all: the window of a product (OPTIONS when not named, as on Bybit)."""
    window = p.int("timeWindow")
    if window is None:
        raise E.param_error("params error: timeWindow is required")
    sim.dcp.set_window(p.str("product"), window)
    return {}, None


def dcp_info(sim: SimExchange, p: Params) -> Result:
    return {"dcpInfos": sim.dcp.infos()}, None


ROUTES: dict[str, Route] = {
    "/v5/market/time": Route("GET", False, server_time),
    "/v5/market/instruments-info": Route("GET", False, instruments_info),
    "/v5/market/tickers": Route("GET", False, tickers),
    "/v5/market/kline": Route("GET", False, kline),
    "/v5/market/orderbook": Route("GET", False, orderbook),
    "/v5/order/create": Route("POST", True, create_order),
    "/v5/order/cancel": Route("POST", True, cancel_order),
    "/v5/order/cancel-all": Route("POST", True, cancel_all),
    "/v5/order/amend": Route("POST", True, amend_order),
    "/v5/order/realtime": Route("GET", True, open_orders),
    "/v5/order/history": Route("GET", True, order_history),
    "/v5/execution/list": Route("GET", True, executions),
    "/v5/position/list": Route("GET", True, positions),
    "/v5/position/set-leverage": Route("POST", True, set_leverage),
    "/v5/account/wallet-balance": Route("GET", True, wallet_balance),
    "/v5/order/disconnected-cancel-all": Route("POST", True, set_dcp),
    "/v5/account/query-dcp-info": Route("GET", True, dcp_info),
}
