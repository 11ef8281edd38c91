"""The aiohttp side of the REST API: faults, signature check, envelope and rate-limit headers."""

from __future__ import annotations

import asyncio
from typing import Any, NoReturn
from urllib.parse import parse_qsl

import msgspec
from aiohttp import web

from . import errors as E
from .appkeys import RATES, SIM
from .auth import verify_rest
from .core import now_ms
from .endpoints import ROUTES
from .faults import Fault, FaultRegistry
from .journal import ORIGIN_API
from .params import Params
from .ratelimit import RateWindow


def envelope(ret_code: int, ret_msg: str, result: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"retCode": ret_code, "retMsg": ret_msg, "result": result if result is not None else {},
            "retExtInfo": {}, "time": now_ms()}


_encode = msgspec.json.Encoder().encode
# Typed decoding: a body must be a JSON object; what it holds is read by ``Params`` with Bybit's 10001 errors.
_decode_body = msgspec.json.Decoder(dict[str, Any]).decode


def _json(body: dict[str, Any], headers: dict[str, str]) -> web.Response:
    return web.Response(body=_encode(body), content_type="application/json", headers=headers)


async def dispatch(request: web.Request) -> web.StreamResponse:
    """Serve one /v5 REST call the way Bybit does."""
    sim = request.app[SIM]
    rates = request.app[RATES]
    path = request.path
    route = ROUTES.get(path)
    if route is None or route.method != request.method:
        return web.Response(status=404, text="404 page not found")
    faults = sim.faults
    if faults.faults:
        refused = await _injected_refusal(faults, rates, path)
        if refused is not None:
            return refused
    headers = rates.headers(path)
    raw_query = request.raw_path.partition("?")[2]
    body = await request.read()
    try:
        body_text = body.decode("utf-8")
        if route.auth:
            verify_rest(sim.creds, request.headers, raw_query if request.method == "GET" else body_text, now_ms())
        params = _parse(request.method, raw_query, body_text)
        result, changes = route.handler(sim, params)
    except E.ExchangeError as exc:
        return _json(envelope(exc.ret_code, exc.ret_msg), headers)
    except UnicodeDecodeError:
        return _json(envelope(E.PARAM_ERROR, "params error: body is not UTF-8"), headers)
    if changes is not None:
        # Exchange truth reaches the disk before the client hears about it (one fsync per batch of requests).
        sim.publish(changes, origin=ORIGIN_API)
        await sim.durable()
    ambiguous = faults.rest_fault("ambiguous_submit", path) if faults.faults else None
    if ambiguous is not None:
        await _lose_response(request, faults, ambiguous)
    return _json(envelope(0, "OK", result), headers)


async def _injected_refusal(faults: FaultRegistry, rates: RateWindow, path: str) -> web.Response | None:
    """Apply the injected latency; return the HTTP error or rate-limit answer a fault calls for, if any."""
    delay = faults.delay_s("rest", path)
    if delay:
        await asyncio.sleep(delay)
    http_error = faults.rest_fault("http_error", path)
    if http_error is not None:
        faults.use(http_error)
        return web.Response(status=int(http_error.params["status"]), text="simulated server error")
    limited = faults.rest_fault("rate_limit", path)
    if limited is not None:
        faults.use(limited)
        reset = now_ms() + int(limited.params["reset_ms"])
        return _json(envelope(E.RATE_LIMITED, "Too many visits!"), rates.headers(path, exhausted=True, reset_ms=reset))
    return None


async def _lose_response(request: web.Request, faults: FaultRegistry, ambiguous: Fault) -> NoReturn:
    """Cut the connection of a request that took effect, optionally after holding it: no response at all."""
    faults.use(ambiguous)
    if ambiguous.params["mode"] == "hang":
        await asyncio.sleep(float(ambiguous.params["hold_s"]))
    if request.transport is not None:
        request.transport.abort()
    raise asyncio.CancelledError  # no response: the handler ends with the connection


def _parse(method: str, raw_query: str, body_text: str) -> Params:
    if method == "GET":
        return Params(dict(parse_qsl(raw_query, keep_blank_values=True)))
    if not body_text.strip():
        return Params({})
    try:
        return Params(_decode_body(body_text))
    except msgspec.ValidationError as exc:  # valid JSON of the wrong shape, or a number no reader can hold
        if str(exc).startswith("Expected `object`"):
            raise E.param_error("params error: request body must be a JSON object") from None
        raise E.param_error(f"params error: request body is not valid JSON ({exc})") from None
    except msgspec.DecodeError:
        raise E.param_error("params error: request body is not valid JSON") from None
