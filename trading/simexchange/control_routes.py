"""The simulator's own control API under ``/sim``: faults, state, reset, market and manual actions.

Only loopback clients may use it: these routes change exchange truth at will.
"""

from __future__ import annotations

import ipaddress
import json
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import errors as E
from .appkeys import SIM
from .orders import OrderRequest

if TYPE_CHECKING:
    from .core import SimExchange

ONE_SHOT_KINDS = ("ws_drop", "ws_malformed")


def is_loopback(remote: str | None) -> bool:
    """Say whether a peer address is on this machine."""
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


@web.middleware
async def loopback_only(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.path.startswith("/sim") and not is_loopback(request.remote):
        return web.json_response({"error": "control routes accept loopback clients only"}, status=403)
    return await handler(request)


def _sim(request: web.Request) -> SimExchange:
    return request.app[SIM]


async def _body(request: web.Request) -> dict[str, Any]:
    text = await request.text()
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        raise web.HTTPBadRequest(text="body is not valid JSON") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return data


def _bad(msg: str) -> web.Response:
    return web.json_response({"error": msg}, status=400)


async def inject_fault(request: web.Request) -> web.StreamResponse:
    sim = _sim(request)
    data = await _body(request)
    kind = data.get("kind")
    params = data.get("params") or {}
    if not isinstance(kind, str) or not isinstance(params, dict):
        return _bad("kind (string) and params (object) are required")
    try:
        fault = sim.faults.add(kind, params, duration_s=data.get("duration_s"), count=data.get("count"))
    except (ValueError, TypeError) as exc:
        return _bad(str(exc))
    sim.sync_fault_effects()
    if kind == "ws_drop":
        for conn in sim.hub.streams(fault.params["stream"]):
            await conn.drop(fault.params["mode"])
    elif kind == "ws_malformed":
        for conn in sim.hub.streams(fault.params["stream"]):
            conn.send(fault.params["text"])
    if kind in ONE_SHOT_KINDS and data.get("duration_s") is None:
        sim.faults.remove(fault.id)  # acted once; nothing lasts
    return web.json_response({"id": fault.id, "fault": fault.describe(fault.created)})


async def delete_fault(request: web.Request) -> web.StreamResponse:
    sim = _sim(request)
    fault = sim.faults.remove(request.match_info["fault_id"])
    sim.sync_fault_effects()
    if fault is None:
        return web.json_response({"error": "no such fault"}, status=404)
    return web.json_response({"cleared": [fault.id]})


async def clear_faults(request: web.Request) -> web.StreamResponse:
    sim = _sim(request)
    data = await _body(request)
    gone = sim.faults.clear(data.get("kind"))
    sim.sync_fault_effects()
    return web.json_response({"cleared": [f.id for f in gone]})


async def get_state(request: web.Request) -> web.StreamResponse:
    return web.json_response(_sim(request).describe())


async def reset(request: web.Request) -> web.StreamResponse:
    sim = _sim(request)
    sim.reset()
    return web.json_response({"reset": True})


async def publish_market(request: web.Request) -> web.StreamResponse:
    """Play Bybit public messages now, as if the market source had sent them."""
    sim = _sim(request)
    data = await _body(request)
    messages = data.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        return _bad("messages must be a list of Bybit public messages")
    for msg in messages:
        try:
            sim.play(msg)
        except (KeyError, ValueError, TypeError, InvalidOperation) as exc:
            return _bad(f"bad market message {msg!r}: {exc}")
    sim.persist_if_dirty()
    return web.json_response({"played": len(messages)})


def _dec(data: dict[str, Any], name: str) -> Decimal | None:
    value = data.get(name)
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise web.HTTPBadRequest(text=f"{name} invalid") from None


async def action(request: web.Request) -> web.StreamResponse:
    """Change exchange truth behind the client's back, as a manual action in the Bybit app would."""
    sim = _sim(request)
    data = await _body(request)
    name = request.match_info["name"]
    symbol = data.get("symbol", "")
    try:
        if name == "close-position":
            changes = sim.engine.close_position(symbol)
            result: dict[str, Any] = {"symbol": symbol}
        elif name == "cancel-order":
            order, changes = sim.engine.cancel_order(symbol, data.get("orderId"), data.get("orderLinkId"))
            result = {"orderId": order.order_id}
        elif name == "place-order":
            req = OrderRequest(
                symbol=symbol, side=data.get("side", "Buy"), order_type=data.get("orderType", "Market"),
                qty=_dec(data, "qty") or Decimal(0), price=_dec(data, "price"),
                link_id=data.get("orderLinkId", ""), reduce_only=bool(data.get("reduceOnly", False)),
                take_profit=_dec(data, "takeProfit"), stop_loss=_dec(data, "stopLoss"),
            )
            order, changes = sim.engine.place_order(req)
            result = {"orderId": order.order_id, "orderStatus": order.status}
        else:
            return web.json_response({"error": f"unknown action {name}"}, status=404)
    except E.ExchangeError as exc:
        return web.json_response({"error": exc.ret_msg, "retCode": exc.ret_code}, status=409)
    sim.publish(changes)
    sim.persist()
    return web.json_response(result)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/sim/faults", inject_fault)
    app.router.add_post("/sim/faults/clear", clear_faults)
    app.router.add_delete("/sim/faults/{fault_id}", delete_fault)
    app.router.add_get("/sim/state", get_state)
    app.router.add_post("/sim/reset", reset)
    app.router.add_post("/sim/market", publish_market)
    app.router.add_post("/sim/actions/{name}", action)
