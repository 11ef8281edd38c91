"""The pybit adapter's REST half: the exchange port over Bybit V5 (or the simulator).

pybit is used unmodified, with its own retries turned off: a retry sleeps in
the calling thread and a blind re-POST after a timeout makes duplicate orders.
Every call is timed and reported to an observer (latency monitor, failure
detectors); errors are mapped to the port's exceptions, which say what to do.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import requests
from pybit.exceptions import FailedRequestError, InvalidRequestError

from trading.exchange.port import (
    DCP_PRODUCT,
    AmbiguousSubmitError,
    DuplicateOrderLinkId,
    ExchangeError,
    ExchangeOrder,
    ExchangePosition,
    Execution,
    OrderAck,
    OrderRejected,
    PlaceOrder,
    RateLimited,
    TemporaryExchangeError,
    Wallet,
)
from trading.marketdata.instruments import InstrumentSpec

logger = logging.getLogger(__name__)

CATEGORY = "linear"
RATE_LIMIT = 10006
SERVER_ERRORS = frozenset({10000, 10016})
ORDER_NOT_FOUND = 110001
LEVERAGE_NOT_MODIFIED = 110043
DUPLICATE_LINK_ID = 110072
MAX_PAGES = 20
# Refusals that say the exchange already is as asked, by operation: answered as successes.
ALREADY_SO: dict[str, frozenset[int]] = {"set_leverage": frozenset({LEVERAGE_NOT_MODIFIED})}

RestObserver = Callable[[str, bool, float, str], None]
"""Called after every request: (operation, ok, elapsed_ms, error_kind)."""

# pybit falls back to its default retry set when given an empty one; a code
# Bybit never sends turns retries off.
NO_RETRY_CODES = {-1}


def pybit_http_kwargs(*, timeout_s: float) -> dict[str, Any]:
    """Constructor arguments that make pybit's HTTP client safe for this product."""
    return {"retry_codes": NO_RETRY_CODES, "max_retries": 1, "force_retry": False, "timeout": timeout_s}


def _d(value: Any) -> Decimal:
    if value in (None, ""):
        return Decimal(0)
    return Decimal(str(value))


def _i(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def parse_order(row: dict[str, Any]) -> ExchangeOrder:
    return ExchangeOrder(
        order_id=str(row.get("orderId", "")),
        order_link_id=str(row.get("orderLinkId", "")),
        symbol=str(row["symbol"]),
        side=str(row.get("side", "")),
        order_type=str(row.get("orderType", "")),
        price=_d(row.get("price")),
        qty=_d(row.get("qty")),
        cum_exec_qty=_d(row.get("cumExecQty")),
        avg_price=_d(row.get("avgPrice")),
        status=str(row.get("orderStatus", "")),
        reduce_only=bool(row.get("reduceOnly", False)),
        created_ms=_i(row.get("createdTime")),
        updated_ms=_i(row.get("updatedTime")),
    )


def parse_position(row: dict[str, Any]) -> ExchangePosition:
    return ExchangePosition(
        symbol=str(row["symbol"]),
        side=str(row.get("side", "")),
        size=_d(row.get("size")),
        # REST says avgPrice, the position stream says entryPrice.
        avg_price=_d(row.get("avgPrice", row.get("entryPrice"))),
        leverage=_d(row.get("leverage")),
        unrealised_pnl=_d(row.get("unrealisedPnl")),
        mark_price=_d(row.get("markPrice")),
        take_profit=_d(row.get("takeProfit")),
        stop_loss=_d(row.get("stopLoss")),
        updated_ms=_i(row.get("updatedTime")),
    )


def parse_execution(row: dict[str, Any]) -> Execution:
    return Execution(
        exec_id=str(row["execId"]),
        order_id=str(row.get("orderId", "")),
        order_link_id=str(row.get("orderLinkId", "")),
        symbol=str(row["symbol"]),
        side=str(row.get("side", "")),
        price=_d(row.get("execPrice")),
        qty=_d(row.get("execQty")),
        fee=_d(row.get("execFee")),
        is_maker=bool(row.get("isMaker", False)),
        exec_ms=_i(row.get("execTime")),
        closed_size=_d(row.get("closedSize")),
    )


def parse_instrument(row: dict[str, Any]) -> InstrumentSpec:
    lot = row.get("lotSizeFilter", {})
    price = row.get("priceFilter", {})
    leverage = row.get("leverageFilter", {})
    return InstrumentSpec(
        symbol=str(row["symbol"]),
        base_coin=str(row.get("baseCoin", "")),
        tick_size=_d(price.get("tickSize")),
        qty_step=_d(lot.get("qtyStep")),
        min_qty=_d(lot.get("minOrderQty")),
        max_qty=_d(lot.get("maxOrderQty")),
        min_notional=_d(lot.get("minNotionalValue", "5")),
        max_leverage=_d(leverage.get("maxLeverage")),
        start_price=Decimal(0),
    )


def _plain(value: Decimal) -> str:
    """Format a Decimal the way Bybit expects: no exponent, no trailing zeros."""
    text = format(value.normalize(), "f")
    return text


def _refusal(operation: str, exc: InvalidRequestError, code: int, submit_link_id: str) -> ExchangeError:
    """Return the port's exception for a retCode answer: what the caller must do about it."""
    if code == RATE_LIMIT:
        headers = exc.resp_headers or {}
        reset = headers.get("X-Bapi-Limit-Reset-Timestamp")
        return RateLimited(exc.message, reset_at_ms=_i(reset) or None)
    if code in SERVER_ERRORS:
        if submit_link_id:
            return AmbiguousSubmitError(exc.message, order_link_id=submit_link_id)
        return TemporaryExchangeError(f"{operation}: {code} {exc.message}")
    if code == DUPLICATE_LINK_ID:
        return DuplicateOrderLinkId(exc.message, ret_code=code)
    return OrderRejected(exc.message, ret_code=code)


class PybitRest:
    """The exchange port over a pybit ``HTTP`` session (Bybit or the simulator)."""

    def __init__(self, http: Any, *, observer: RestObserver | None = None, settle_coin: str = "USDT") -> None:
        self._http = http
        self._lock = threading.Lock()  # requests.Session is not documented as thread-safe
        self._observer = observer
        self._settle_coin = settle_coin

    # -- plumbing -----------------------------------------------------------

    def _call(self, operation: str, method: Callable[..., Any], *, submit_link_id: str = "", **params: Any) -> Any:
        """Call pybit; map its errors to the port's. A retCode of ``ALREADY_SO[operation]`` is a success, for the
        caller and for the observer (the failure detectors): the exchange is as asked."""
        started = time.perf_counter()
        kind = ""
        try:
            with self._lock:
                response = method(**params)
            return response["result"]
        except InvalidRequestError as exc:
            code = int(exc.status_code)
            if code in ALREADY_SO.get(operation, ()):
                return {}
            kind = f"retCode {code}"
            raise _refusal(operation, exc, code, submit_link_id) from exc
        except FailedRequestError as exc:
            kind = f"HTTP {exc.status_code}"
            if submit_link_id:
                raise AmbiguousSubmitError(f"{operation}: {kind} {exc.message}", order_link_id=submit_link_id) from exc
            raise TemporaryExchangeError(f"{operation}: {kind} {exc.message}") from exc
        except (requests.RequestException, ConnectionError, ValueError) as exc:
            # ValueError: pybit's negative sleep on a stale rate-limit header, or a body that is not JSON.
            kind = type(exc).__name__
            if submit_link_id:
                raise AmbiguousSubmitError(f"{operation}: {kind}: {exc}", order_link_id=submit_link_id) from exc
            raise TemporaryExchangeError(f"{operation}: {kind}: {exc}") from exc
        finally:
            if self._observer is not None:
                elapsed_ms = (time.perf_counter() - started) * 1000
                try:
                    self._observer(operation, not kind, elapsed_ms, kind)
                except Exception:  # an observer must never break trading
                    logger.exception("REST observer failed")

    def _paged(self, operation: str, method: Callable[..., Any], **params: Any) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        cursor = ""
        for _ in range(MAX_PAGES):
            page = self._call(operation, method, **params, **({"cursor": cursor} if cursor else {}))
            rows.extend(page.get("list", []))
            cursor = page.get("nextPageCursor") or ""
            if not cursor:
                return rows
        raise ExchangeError(f"{operation}: more than {MAX_PAGES} pages")

    # -- the port -----------------------------------------------------------

    def place_order(self, order: PlaceOrder) -> OrderAck:
        params: dict[str, Any] = {
            "category": CATEGORY,
            "symbol": order.symbol,
            "side": order.side,
            "orderType": order.order_type,
            "qty": _plain(order.qty),
            "orderLinkId": order.order_link_id,
            "positionIdx": 0,
            "reduceOnly": order.reduce_only,
        }
        if order.price is not None:
            params["price"] = _plain(order.price)
        if order.take_profit is not None:
            params["takeProfit"] = _plain(order.take_profit)
        if order.stop_loss is not None:
            params["stopLoss"] = _plain(order.stop_loss)
        if order.time_in_force:
            params["timeInForce"] = order.time_in_force
        result = self._call("place_order", self._http.place_order, submit_link_id=order.order_link_id, **params)
        return OrderAck(order_id=str(result.get("orderId", "")), order_link_id=str(result.get("orderLinkId", "")))

    def cancel_order(self, symbol: str, *, order_id: str = "", order_link_id: str = "") -> bool:
        ids = {"orderId": order_id} if order_id else {"orderLinkId": order_link_id}
        try:
            self._call("cancel_order", self._http.cancel_order, category=CATEGORY, symbol=symbol, **ids)
        except OrderRejected as exc:
            if exc.ret_code == ORDER_NOT_FOUND:
                return False
            raise
        return True

    def cancel_all(self, symbol: str | None = None) -> list[str]:
        scope = {"symbol": symbol} if symbol else {"settleCoin": self._settle_coin}
        result = self._call("cancel_all", self._http.cancel_all_orders, category=CATEGORY, **scope)
        return [str(row.get("orderLinkId") or row.get("orderId")) for row in result.get("list", [])]

    def get_order(self, symbol: str, order_link_id: str, *, order_id: str = "") -> ExchangeOrder | None:
        key, value = ("orderLinkId", order_link_id) if order_link_id else ("orderId", order_id)
        if not value:
            raise ValueError("get_order needs an orderLinkId or an orderId")
        for operation, method in (
            ("get_order", self._http.get_open_orders),
            ("get_order_history", self._http.get_order_history),
        ):
            result = self._call(operation, method, category=CATEGORY, symbol=symbol, **{key: value})
            for row in result.get("list", []):
                if row.get(key) == value:
                    return parse_order(row)
        return None

    def open_orders(self, symbol: str | None = None) -> list[ExchangeOrder]:
        scope = {"symbol": symbol} if symbol else {"settleCoin": self._settle_coin}
        rows = self._paged("open_orders", self._http.get_open_orders, category=CATEGORY, limit=50, **scope)
        return [order for order in map(parse_order, rows) if order.is_open]

    def positions(self, symbol: str | None = None) -> list[ExchangePosition]:
        scope = {"symbol": symbol} if symbol else {"settleCoin": self._settle_coin}
        rows = self._paged("positions", self._http.get_positions, category=CATEGORY, limit=200, **scope)
        return [position for position in map(parse_position, rows) if position.size > 0]

    def executions(self, symbol: str | None = None, *, since_ms: int = 0) -> list[Execution]:
        params: dict[str, Any] = {"category": CATEGORY, "limit": 100}
        if symbol:
            params["symbol"] = symbol
        if since_ms:
            params["startTime"] = since_ms
        return [parse_execution(row) for row in self._paged("executions", self._http.get_executions, **params)]

    def wallet(self) -> Wallet:
        result = self._call("wallet", self._http.get_wallet_balance, accountType="UNIFIED", coin=self._settle_coin)
        account = (result.get("list") or [{}])[0]
        coin: dict[str, Any] = next((c for c in account.get("coin", []) if c.get("coin") == self._settle_coin), {})
        return Wallet(
            equity=_d(coin.get("equity", account.get("totalEquity"))),
            wallet_balance=_d(coin.get("walletBalance", account.get("totalWalletBalance"))),
            available=_d(account.get("totalAvailableBalance") or coin.get("availableToWithdraw")),
            unrealised_pnl=_d(coin.get("unrealisedPnl")),
        )

    def instruments(self, symbols: list[str]) -> dict[str, InstrumentSpec]:
        found: dict[str, InstrumentSpec] = {}
        for symbol in symbols:
            result = self._call("instruments", self._http.get_instruments_info, category=CATEGORY, symbol=symbol)
            for row in result.get("list", []):
                found[row["symbol"]] = parse_instrument(row)
        missing = sorted(set(symbols) - set(found))
        if missing:
            raise ExchangeError(f"unknown symbols on the exchange: {', '.join(missing)}")
        return found

    def set_leverage(self, symbol: str, leverage: Decimal) -> None:
        """Set both sides' leverage (one-way mode); 110043, already that leverage, is a success."""
        value = _plain(leverage)
        self._call(
            "set_leverage",
            self._http.set_leverage,
            category=CATEGORY,
            symbol=symbol,
            buyLeverage=value,
            sellLeverage=value,
        )

    def dcp_window_s(self) -> int | None:
        """The account's DERIVATIVES DCP window (``query-dcp-info``); None when it has none (empty infos)."""
        result = self._call("dcp_info", self._http.query_dcp_info)
        for info in result.get("dcpInfos") or []:
            if info.get("product") == DCP_PRODUCT and info.get("dcpStatus") == "ON":
                return int(info.get("timeWindow") or 0) or None
        return None

    def set_dcp(self, window_s: int) -> None:
        """Arm DCP for DERIVATIVES (``product`` named: Bybit's default is OPTIONS)."""
        self._call("set_dcp", self._http.set_dcp, product=DCP_PRODUCT, timeWindow=int(window_s))

    def server_time_ms(self) -> int:
        result = self._call("server_time", self._http.get_server_time)
        return int(result["timeNano"]) // 1_000_000
