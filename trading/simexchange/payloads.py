"""Bybit V5 shapes of orders, positions, executions and the wallet.

Every number is a string, as Bybit sends it (except positionIdx, seq and
booleans). Pure Python: the REPLAY venue may reuse it to speak Bybit's shapes.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from trading.marketdata.instruments import InstrumentSpec

from .account import Account
from .constants import LEVERAGE_STEP, MIN_LEVERAGE, SETTLE_COIN
from .models import Execution, Order, Position
from .orders import max_price

_MONEY = Decimal("0.00000001")


def money(value: Decimal | None) -> str:
    """Format an amount of USDT: at most 8 decimals, no exponent."""
    if value is None:
        return "0"
    q = value.quantize(_MONEY).normalize()
    return format(q, "f") if q else "0"


def price_str(spec: InstrumentSpec, value: Decimal | None, empty: str = "0") -> str:
    """Format a price on the instrument's tick grid."""
    return empty if value is None else format(value.quantize(spec.tick_size), "f")


def qty_str(spec: InstrumentSpec, value: Decimal) -> str:
    """Format a quantity on the instrument's qty step."""
    return format(value.quantize(spec.qty_step), "f")


def order_item(engine: Account, o: Order, *, ws: bool = False) -> dict[str, Any]:
    """Return an order as /v5/order/realtime lists it (or the ``order`` topic with ``ws``)."""
    spec = engine.instruments[o.symbol]
    leaves = o.leaves_qty
    ref = o.price if o.price is not None else (o.avg_price or Decimal(0))
    item: dict[str, Any] = {
        "orderId": o.order_id,
        "orderLinkId": o.link_id,
        "blockTradeId": "",
        "symbol": o.symbol,
        "price": price_str(spec, o.price) if o.price is not None else "0",
        "qty": qty_str(spec, o.qty),
        "side": o.side,
        "isLeverage": "",
        "positionIdx": 0,
        "orderStatus": o.status,
        "cancelType": o.cancel_type,
        "rejectReason": o.reject_reason,
        "avgPrice": money(o.avg_price) if o.cum_qty else "0",  # a mean of fills: not on the tick grid
        "leavesQty": qty_str(spec, leaves),
        "leavesValue": money(leaves * ref),
        "cumExecQty": qty_str(spec, o.cum_qty),
        "cumExecValue": money(o.cum_value),
        "cumExecFee": money(o.cum_fee),
        "timeInForce": o.time_in_force,
        "orderType": o.order_type,
        "stopOrderType": o.stop_order_type,
        "orderIv": "",
        "triggerPrice": "0",
        "takeProfit": price_str(spec, o.take_profit),
        "stopLoss": price_str(spec, o.stop_loss),
        "tpTriggerBy": "LastPrice" if o.take_profit is not None else "",
        "slTriggerBy": "LastPrice" if o.stop_loss is not None else "",
        "triggerDirection": 0,
        "triggerBy": "",
        "lastPriceOnCreated": price_str(spec, o.last_price_on_created, ""),
        "reduceOnly": o.reduce_only,
        "closeOnTrigger": o.close_on_trigger,
        "smpType": "None",
        "smpGroup": 0,
        "smpOrderId": "",
        "tpslMode": "Full" if (o.take_profit is not None or o.stop_loss is not None) else "",
        "tpLimitPrice": "0",
        "slLimitPrice": "0",
        "placeType": "",
        "createType": o.create_type,
        "createdTime": str(o.created_ms),
        "updatedTime": str(o.updated_ms),
        "cumFeeDetail": {SETTLE_COIN: money(o.cum_fee)},
    }
    if ws:
        item = {"category": "linear", **item, "feeCurrency": SETTLE_COIN}
    return item


def position_item(engine: Account, pos: Position, *, ws: bool = False) -> dict[str, Any]:
    """Return a position as /v5/position/list lists it (or the ``position`` topic with ``ws``)."""
    spec = engine.instruments[pos.symbol]
    mark = engine.mark_price(pos.symbol) or Decimal(0)
    size = abs(pos.size)
    value = size * pos.avg_price
    im = engine.position_im(pos)
    avg = money(pos.avg_price) if pos.size else "0"
    item: dict[str, Any] = {
        "positionIdx": 0,
        "riskId": 1,
        "riskLimitValue": "2000000",
        "symbol": pos.symbol,
        "side": pos.side,
        "size": qty_str(spec, size) if size else "0",  # Bybit's flat row says "0"
        "avgPrice": avg,
        "positionValue": money(value),
        "tradeMode": 0,
        "positionStatus": "Normal",
        "autoAddMargin": 0,
        "adlRankIndicator": 2 if pos.size else 0,
        "leverage": format(pos.leverage.normalize(), "f"),
        "positionBalance": money(im),
        "markPrice": price_str(spec, mark),
        "liqPrice": "",
        "bustPrice": "",
        "positionIM": money(im),
        "positionMM": money(value * Decimal("0.005")),
        "tpslMode": "Full",
        "takeProfit": price_str(spec, pos.take_profit),
        "stopLoss": price_str(spec, pos.stop_loss),
        "trailingStop": "0",
        "unrealisedPnl": money(engine.unrealised(pos)),
        "curRealisedPnl": money(pos.cur_realised),
        "cumRealisedPnl": money(pos.cum_realised),
        "seq": pos.seq,
        "isReduceOnly": False,
        "createdTime": str(pos.created_ms),
        "updatedTime": str(pos.updated_ms),
    }
    if ws:
        # The private stream names the average price ``entryPrice`` (REST: ``avgPrice``).
        item = {"category": "linear", **item, "entryPrice": avg}
    return item


def execution_item(engine: Account, ex: Execution, *, ws: bool = False) -> dict[str, Any]:
    """Return a fill as /v5/execution/list lists it (or the ``execution`` topic with ``ws``)."""
    spec = engine.instruments[ex.symbol]
    item: dict[str, Any] = {
        "symbol": ex.symbol,
        "orderId": ex.order_id,
        "orderLinkId": ex.link_id,
        "side": ex.side,
        "orderPrice": price_str(spec, ex.order_price) if ex.order_price is not None else "0",
        "orderQty": qty_str(spec, ex.order_qty),
        "leavesQty": qty_str(spec, ex.leaves_qty),
        "createType": ex.create_type,
        "orderType": ex.order_type,
        "stopOrderType": ex.stop_order_type,
        "execFee": money(ex.exec_fee),
        "execId": ex.exec_id,
        "execPrice": price_str(spec, ex.exec_price),
        "execQty": qty_str(spec, ex.exec_qty),
        "execType": "Trade",
        "execValue": money(ex.exec_value),
        "execTime": str(ex.exec_time),
        "feeCurrency": SETTLE_COIN,
        "isMaker": ex.is_maker,
        "feeRate": format(ex.fee_rate.normalize(), "f"),
        "tradeIv": "",
        "markIv": "",
        "markPrice": price_str(spec, ex.mark_price),
        "indexPrice": "",
        "underlyingPrice": "",
        "blockTradeId": "",
        "closedSize": qty_str(spec, ex.closed_size),
        "execPnl": money(ex.exec_pnl),
        "seq": ex.seq,
    }
    if ws:
        item = {"category": "linear", **item, "isLeverage": "0"}
    return item


def wallet_item(engine: Account) -> dict[str, Any]:
    """Return the UNIFIED account as /v5/account/wallet-balance lists it (and the ``wallet`` topic)."""
    upl = sum((engine.unrealised(p) for p in engine.positions.values()), Decimal(0))
    pos_im = sum((engine.position_im(p) for p in engine.positions.values()), Decimal(0))
    pos_mm = sum((abs(p.size) * p.avg_price * Decimal("0.005") for p in engine.positions.values()), Decimal(0))
    order_im = engine.order_im()
    equity = engine.wallet.balance + upl
    available = max(Decimal(0), equity - pos_im - order_im)
    im_rate = (pos_im + order_im) / equity if equity > 0 else Decimal(0)
    mm_rate = pos_mm / equity if equity > 0 else Decimal(0)
    return {
        "accountType": "UNIFIED",
        "totalEquity": money(equity),
        "totalWalletBalance": money(engine.wallet.balance),
        "totalMarginBalance": money(equity),
        "totalAvailableBalance": money(available),
        "totalPerpUPL": money(upl),
        "totalInitialMargin": money(pos_im + order_im),
        "totalMaintenanceMargin": money(pos_mm),
        "accountIMRate": money(im_rate.quantize(Decimal("0.0001"))),
        "accountMMRate": money(mm_rate.quantize(Decimal("0.0001"))),
        "accountLTV": "0",
        "coin": [
            {
                "coin": SETTLE_COIN,
                "equity": money(equity),
                "usdValue": money(equity),
                "walletBalance": money(engine.wallet.balance),
                "availableToWithdraw": money(available),
                "availableToBorrow": "",
                "unrealisedPnl": money(upl),
                "cumRealisedPnl": money(engine.wallet.cum_realised),
                "locked": "0",
                "totalOrderIM": money(order_im),
                "totalPositionIM": money(pos_im),
                "totalPositionMM": money(pos_mm),
                "borrowAmount": "0",
                "accruedInterest": "0",
                "bonus": "0",
                "spotBorrow": "0",
                "marginCollateral": True,
                "collateralSwitch": True,
            }
        ],
    }


def instrument_item(spec: InstrumentSpec) -> dict[str, Any]:
    """Return an instrument as /v5/market/instruments-info lists it."""
    scale = max(0, -spec.tick_size.normalize().as_tuple().exponent)  # type: ignore[operator]
    return {
        "symbol": spec.symbol,
        "contractType": "LinearPerpetual",
        "status": "Trading",
        "baseCoin": spec.base_coin,
        "quoteCoin": SETTLE_COIN,
        "launchTime": "1585526400000",
        "deliveryTime": "0",
        "deliveryFeeRate": "",
        "priceScale": str(scale),
        "leverageFilter": {
            "minLeverage": format(MIN_LEVERAGE, "f"),
            "maxLeverage": format(spec.max_leverage.quantize(LEVERAGE_STEP), "f"),
            "leverageStep": format(LEVERAGE_STEP, "f"),
        },
        "priceFilter": {
            "minPrice": format(spec.tick_size, "f"),
            "maxPrice": format(max_price(spec), "f"),
            "tickSize": format(spec.tick_size, "f"),
        },
        "lotSizeFilter": {
            "maxOrderQty": format(spec.max_qty, "f"),
            "minOrderQty": format(spec.min_qty, "f"),
            "qtyStep": format(spec.qty_step, "f"),
            "postOnlyMaxOrderQty": format(spec.max_qty, "f"),
            "maxMktOrderQty": format(spec.max_qty, "f"),
            "minNotionalValue": format(spec.min_notional, "f"),
        },
        "unifiedMarginTrade": True,
        "fundingInterval": 480,
        "settleCoin": SETTLE_COIN,
        "copyTrading": "both",
        "upperFundingRate": "0.005",
        "lowerFundingRate": "-0.005",
    }
