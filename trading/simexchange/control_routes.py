"""The simulator's own control API under ``/sim``: faults, state, reset, market, manual actions, history.

These routes change exchange truth at will: ``control_auth`` admits only
loopback callers with the control token, and every value is checked here,
within bounds, before anything changes (a 4xx names the field at fault).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import errors as E
from .appkeys import SIM
from .faults import FaultError
from .journal import ORIGIN_SIM
from .models import Changes
from .orders import OrderRequest

if TYPE_CHECKING:
    from .core import SimExchange

ONE_SHOT_KINDS = ("ws_drop", "ws_malformed")
M = TypeVar("M", bound=BaseModel)
MAX_MESSAGES = 10_000  # market messages in one /sim/market call
MAX_NUMBER = Decimal("1e12")  # above any price or quantity of a listed instrument
DEFAULT_HISTORY_LIMIT = 1000
MAX_HISTORY_LIMIT = 5000  # records in one /sim/history answer (about 2 MB)
MAX_SEQ = 2**63 - 1

Positive = Annotated[Decimal, Field(gt=0, le=MAX_NUMBER, allow_inf_nan=False)]
Size = Annotated[Decimal, Field(ge=0, le=MAX_NUMBER, allow_inf_nan=False)]
Id = Annotated[str, Field(max_length=64)]
# Lax where a number may come as Bybit's string ("0.01"); refuse fields nobody reads, so a typo is not ignored.
_BODY = ConfigDict(extra="forbid", allow_inf_nan=False)
_WIRE = ConfigDict(extra="allow", allow_inf_nan=False)  # Bybit messages carry more fields than are checked


class FaultBody(BaseModel):
    model_config = _BODY
    kind: str = Field(max_length=64)
    params: dict[str, Any] | None = None
    duration_s: Any = None  # bounded by faults.Lifetime
    count: Any = None


class ClearBody(BaseModel):
    model_config = _BODY
    kind: str | None = Field(None, max_length=64)


class SymbolBody(BaseModel):
    model_config = _BODY
    symbol: str = Field(max_length=30)


class CancelBody(SymbolBody):
    orderId: Id | None = None  # noqa: N815 (Bybit's names)
    orderLinkId: Id | None = None  # noqa: N815


class FillBody(CancelBody):
    qty: Positive | None = None  # all the order leaves when absent


class AmendBody(CancelBody):
    qty: Positive | None = None
    price: Positive | None = None
    takeProfit: Size | None = None  # noqa: N815 (0 removes it, as on Bybit)
    stopLoss: Size | None = None  # noqa: N815


class DcpBody(BaseModel):
    model_config = _BODY
    enabled: bool


class HistoryQuery(BaseModel):
    model_config = _BODY
    after: int = Field(0, ge=0, le=MAX_SEQ)
    limit: int = Field(DEFAULT_HISTORY_LIMIT, ge=1, le=MAX_HISTORY_LIMIT)


class PlaceBody(SymbolBody):
    side: Literal["Buy", "Sell"] = "Buy"
    orderType: Literal["Market", "Limit"] = "Market"  # noqa: N815
    qty: Positive
    price: Positive | None = None
    orderLinkId: Annotated[str, Field(max_length=36)] = ""  # noqa: N815
    reduceOnly: bool = False  # noqa: N815
    takeProfit: Positive | None = None  # noqa: N815
    stopLoss: Positive | None = None  # noqa: N815


class Trade(BaseModel):
    model_config = _WIRE
    p: Positive
    v: Positive


class BookData(BaseModel):
    model_config = _WIRE
    b: list[tuple[Positive, Size]] = []
    a: list[tuple[Positive, Size]] = []
    u: int = Field(0, ge=0)
    seq: int = Field(0, ge=0)


class Message(BaseModel):
    model_config = _WIRE
    topic: str = Field(max_length=100)


class TradeMessage(Message):
    data: list[Trade]


class BookMessage(Message):
    data: BookData


class TickerMessage(Message):
    data: dict[str, Any]


MESSAGE_KINDS: dict[str, type[Message]] = {"publicTrade": TradeMessage, "orderbook": BookMessage,
                                           "tickers": TickerMessage}


def bad_request(message: str, field: str) -> web.HTTPBadRequest:
    """Return the 400 to raise for a control call refused before it changed anything, naming the field."""
    return web.HTTPBadRequest(text=json.dumps({"error": message, "field": field}), content_type="application/json")


def _invalid(exc: ValidationError, prefix: str = "") -> web.HTTPBadRequest:
    first = exc.errors()[0]
    name = ".".join(part for part in (prefix, *(str(p) for p in first["loc"])) if part)
    return bad_request(f"{name or 'body'}: {first['msg']}", name or "body")


def _sim(request: web.Request) -> SimExchange:
    return request.app[SIM]


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


async def _body(request: web.Request) -> dict[str, Any]:
    text = await request.text()
    if not text.strip():
        return {}
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        raise bad_request("body is not valid JSON (NaN and Infinity are not JSON)", "body") from None
    if not isinstance(data, dict):
        raise bad_request("body must be a JSON object", "body")
    return data


def _checked(model: type[M], data: dict[str, Any]) -> M:
    """Return ``data`` as ``model``; 400 naming the first field at fault."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc) from None


def _known_symbol(sim: SimExchange, symbol: str) -> str:
    if symbol not in sim.engine.instruments:
        raise bad_request(f"symbol: {symbol!r} is not an instrument of this exchange", "symbol")
    return symbol


async def inject_fault(request: web.Request) -> web.StreamResponse:
    sim = _sim(request)
    body = _checked(FaultBody, await _body(request))
    try:
        fault = sim.faults.add(body.kind, body.params, duration_s=body.duration_s, count=body.count)
    except FaultError as exc:
        raise bad_request(str(exc), exc.field) from None
    sim.sync_fault_effects()
    if body.kind == "ws_drop":
        for conn in sim.hub.streams(fault.params["stream"]):
            await conn.drop(fault.params["mode"])
    elif body.kind == "ws_malformed":
        for conn in sim.hub.streams(fault.params["stream"]):
            conn.send(fault.params["text"])
    if body.kind in ONE_SHOT_KINDS and body.duration_s is None:
        sim.faults.remove(fault.id)  # acted once; nothing lasts
    return web.json_response({"id": fault.id, "fault": fault.describe(fault.created)})


async def delete_fault(request: web.Request) -> web.StreamResponse:
    sim = _sim(request)
    fault = sim.faults.remove(request.match_info["fault_id"])
    sim.sync_fault_effects()
    if fault is None:
        return web.json_response({"error": "no such fault", "field": "fault_id"}, status=404)
    return web.json_response({"cleared": [fault.id]})


async def clear_faults(request: web.Request) -> web.StreamResponse:
    sim = _sim(request)
    body = _checked(ClearBody, await _body(request))
    gone = sim.faults.clear(body.kind)
    sim.sync_fault_effects()
    return web.json_response({"cleared": [f.id for f in gone]})


async def get_state(request: web.Request) -> web.StreamResponse:
    return web.json_response(_sim(request).describe())


async def reset(request: web.Request) -> web.StreamResponse:
    sim = _sim(request)
    await _body(request)
    sim.reset()
    await sim.durable()
    return web.json_response({"reset": True})


async def set_dcp(request: web.Request) -> web.StreamResponse:
    """Give the account Bybit's DCP or take it away (a retail account has none)."""
    sim = _sim(request)
    body = _checked(DcpBody, await _body(request))
    sim.dcp.enabled = body.enabled
    return web.json_response(sim.dcp.describe())


def _check_message(index: int, msg: Any) -> None:
    """Refuse a market message whose numbers could poison the books (NaN, negative, absurd)."""
    field = f"messages.{index}"
    if not isinstance(msg, dict):
        raise bad_request(f"{field}: a Bybit public message is a JSON object", field)
    try:
        Message.model_validate(msg)
        model = MESSAGE_KINDS.get(str(msg["topic"]).partition(".")[0])
        if model is not None:
            model.model_validate(msg)
    except ValidationError as exc:
        raise _invalid(exc, field) from None


async def publish_market(request: web.Request) -> web.StreamResponse:
    """Play Bybit public messages now, as if the market source had sent them."""
    sim = _sim(request)
    messages = (await _body(request)).get("messages")
    if not isinstance(messages, list) or len(messages) > MAX_MESSAGES:
        raise bad_request(f"messages: a list of at most {MAX_MESSAGES} Bybit public messages", "messages")
    for index, msg in enumerate(messages):  # all checked before any is played: a refusal changes nothing
        _check_message(index, msg)
    for index, msg in enumerate(messages):
        try:
            sim.play(msg)
        except (KeyError, ValueError, TypeError, ArithmeticError) as exc:  # a shape the checks above let through
            await sim.durable()
            raise bad_request(f"messages.{index}: cannot be played ({exc})", f"messages.{index}") from None
    await sim.durable()
    return web.json_response({"played": len(messages)})


def _close_position(sim: SimExchange, data: dict[str, Any]) -> tuple[dict[str, Any], Changes]:
    symbol = _known_symbol(sim, _checked(SymbolBody, data).symbol)
    return {"symbol": symbol}, sim.engine.close_position(symbol)


def _cancel_order(sim: SimExchange, data: dict[str, Any]) -> tuple[dict[str, Any], Changes]:
    body = _checked(CancelBody, data)
    order, changes = sim.engine.cancel_order(_known_symbol(sim, body.symbol), body.orderId, body.orderLinkId)
    return {"orderId": order.order_id}, changes


def _order_ref(body: CancelBody) -> tuple[str | None, str | None]:
    if not body.orderId and not body.orderLinkId:
        raise bad_request("orderId: orderId or orderLinkId is required", "orderId")
    return body.orderId, body.orderLinkId


def _fill_order(sim: SimExchange, data: dict[str, Any]) -> tuple[dict[str, Any], Changes]:
    body = _checked(FillBody, data)
    symbol = _known_symbol(sim, body.symbol)
    order_id, link_id = _order_ref(body)
    if body.qty is not None and body.qty % sim.engine.instruments[symbol].qty_step:
        raise bad_request("qty: not a multiple of the instrument's qty step", "qty")
    order, changes = sim.engine.fill_order(symbol, order_id, link_id, body.qty)
    return {"orderId": order.order_id, "orderStatus": order.status, "cumExecQty": format(order.cum_qty, "f")}, changes


def _amend_order(sim: SimExchange, data: dict[str, Any]) -> tuple[dict[str, Any], Changes]:
    body = _checked(AmendBody, data)
    symbol = _known_symbol(sim, body.symbol)
    order_id, link_id = _order_ref(body)
    order, changes = sim.engine.amend_order(symbol, order_id, link_id, qty=body.qty, price=body.price,
                                            take_profit=body.takeProfit, stop_loss=body.stopLoss)
    return {"orderId": order.order_id, "orderStatus": order.status}, changes


def _place_order(sim: SimExchange, data: dict[str, Any]) -> tuple[dict[str, Any], Changes]:
    body = _checked(PlaceBody, data)
    req = OrderRequest(
        symbol=_known_symbol(sim, body.symbol), side=body.side, order_type=body.orderType, qty=body.qty,
        price=body.price, link_id=body.orderLinkId, reduce_only=body.reduceOnly, take_profit=body.takeProfit,
        stop_loss=body.stopLoss,
    )
    order, changes = sim.engine.place_order(req)
    return {"orderId": order.order_id, "orderStatus": order.status}, changes


ACTIONS: dict[str, Callable[[SimExchange, dict[str, Any]], tuple[dict[str, Any], Changes]]] = {
    "close-position": _close_position,
    "cancel-order": _cancel_order,
    "place-order": _place_order,
    "fill-order": _fill_order,
    "amend-order": _amend_order,
}


async def action(request: web.Request) -> web.StreamResponse:
    """Change exchange truth behind the client's back, as a manual action in the Bybit app would."""
    sim = _sim(request)
    name = request.match_info["name"]
    act = ACTIONS.get(name)
    if act is None:
        return web.json_response({"error": f"unknown action {name}", "field": "name"}, status=404)
    data = await _body(request)
    try:
        result, changes = act(sim, data)
    except E.ExchangeError as exc:
        return web.json_response({"error": exc.ret_msg, "retCode": exc.ret_code}, status=409)
    sim.publish(changes, origin=ORIGIN_SIM)
    await sim.durable()
    return web.json_response(result)


def _query(request: web.Request) -> dict[str, str]:
    """Return the query parameters; 400 naming one given twice (which of the two would count is a guess)."""
    for name in request.query:
        if len(request.query.getall(name)) > 1:
            raise bad_request(f"{name}: given more than once", name)
    return dict(request.query)


async def history(request: web.Request) -> web.StreamResponse:
    """Return the exchange history after ``after`` (a seq), at most ``limit`` records, and the last seq given."""
    sim = _sim(request)
    query = _checked(HistoryQuery, _query(request))
    records = sim.journal.read(query.after, query.limit)
    return web.json_response({"records": records, "lastSeq": sim.journal.seq})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/sim/faults", inject_fault)
    app.router.add_post("/sim/faults/clear", clear_faults)
    app.router.add_delete("/sim/faults/{fault_id}", delete_fault)
    app.router.add_get("/sim/state", get_state)
    app.router.add_get("/sim/history", history)
    app.router.add_post("/sim/reset", reset)
    app.router.add_post("/sim/dcp", set_dcp)
    app.router.add_post("/sim/market", publish_market)
    app.router.add_post("/sim/actions/{name}", action)
