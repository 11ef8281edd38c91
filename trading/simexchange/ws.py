"""Bybit V5 WebSocket endpoints: ``/v5/public/linear`` and ``/v5/private``.

Replies follow pybit's dispatch rules (pybit-brief section 4): every reply is a
pong, an auth or (un)subscribe answer echoing ``req_id``, or carries a topic the
client subscribed to; book and ticker topics start with a snapshot.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import WSMsgType, web

from . import dcp
from .appkeys import SIM
from .auth import verify_ws_auth
from .core import now_ms
from .hub import Conn, dumps, needs_snapshot
from .market import is_valid_topic

if TYPE_CHECKING:
    from .core import SimExchange

PRIVATE_TOPICS = frozenset({"order", "execution", "position", "wallet"})

# pybit 5.17 sends a subscribe and only then records its req_id; a reply that beats
# that bookkeeping raises KeyError in its reader thread and kills the stream. Real
# Bybit is never that fast, so answer subscribes after a network-like delay.
SUBSCRIBE_REPLY_DELAY_S = 0.05


async def public_handler(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "public")


async def private_handler(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "private")


async def _serve(request: web.Request, stream: str) -> web.StreamResponse:
    sim = request.app[SIM]
    refuse = sim.faults.stream_fault("ws_refuse", stream)
    if refuse is not None:
        sim.faults.use(refuse)
        return web.Response(status=503, text="simulated: reconnect refused")
    # autoping is off so that the "silent" fault can withhold pongs; pings are answered below.
    ws = web.WebSocketResponse(autoping=False, max_msg_size=1 << 20)
    await ws.prepare(request)
    conn = Conn(sim.hub, ws, request, stream)
    sim.hub.add(conn)
    drop = sim.faults.stream_fault("ws_drop", stream)
    if drop is not None:
        sim.faults.use(drop)
        await conn.drop(drop.params["mode"])
        sim.hub.remove(conn)
        return ws
    try:
        async for msg in ws:
            conn.last_seen = asyncio.get_running_loop().time()
            if msg.type == WSMsgType.PING:
                if not conn.silent():
                    await ws.pong(msg.data)
            elif msg.type == WSMsgType.TEXT:
                # A silent socket still takes requests; its answers are what get lost.
                _on_text(sim, conn, msg.data)
            elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        sim.hub.remove(conn)
    return ws


class Request(msgspec.Struct):
    """A client frame: a JSON object; its fields are checked by each op (a bad one is answered, not dropped)."""

    op: Any = None
    req_id: Any = None
    args: Any = None


_decode_request = msgspec.json.Decoder(Request).decode


def _on_text(sim: SimExchange, conn: Conn, text: str) -> None:
    try:
        req = _decode_request(text)
    except msgspec.MsgspecError:  # not JSON, or JSON that is not an object
        # Bybit answers garbage with an error frame; pybit never sends any.
        conn.send(dumps({"success": False, "ret_msg": "error:request not json", "conn_id": conn.conn_id,
                         "op": "", "req_id": ""}))
        return
    op = req.op
    req_id = req.req_id
    if op == "ping":
        _pong(conn, req_id)
    elif op == "auth":
        _auth(sim, conn, req.args, req_id)
    elif op in ("subscribe", "unsubscribe"):
        _subscribe(sim, conn, op, req.args, req_id)
    else:
        conn.send(_reply(conn, op if isinstance(op, str) else "", False, f"error:op {op!r} not supported", req_id))


def _reply(conn: Conn, op: str, success: bool, ret_msg: str, req_id: Any) -> str:
    body: dict[str, Any] = {"success": success, "ret_msg": ret_msg, "conn_id": conn.conn_id, "op": op}
    if req_id:
        body["req_id"] = req_id
    return dumps(body)


def _pong(conn: Conn, req_id: Any) -> None:
    if conn.stream == "public":
        conn.send(dumps({"success": True, "ret_msg": "pong", "conn_id": conn.conn_id,
                         "req_id": req_id or "", "op": "ping"}))
    else:
        conn.send(dumps({"req_id": req_id or "", "op": "pong", "args": [str(now_ms())], "conn_id": conn.conn_id}))


def _auth(sim: SimExchange, conn: Conn, args: Any, req_id: Any) -> None:
    if conn.stream != "private":
        conn.send(_reply(conn, "auth", False, "Public channels do not need auth", req_id))
        return
    ok, msg = verify_ws_auth(sim.creds, args, now_ms())
    conn.authed = ok
    conn.send(_reply(conn, "auth", ok, msg, req_id))


def _subscribe(sim: SimExchange, conn: Conn, op: str, args: Any, req_id: Any) -> None:
    delayed = _Delayed(conn)
    _subscribe_on(sim, delayed, op, args, req_id)


class _Delayed:
    """A view of a connection whose sends wait SUBSCRIBE_REPLY_DELAY_S."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    def send(self, text: str) -> None:
        self.conn.send(text, SUBSCRIBE_REPLY_DELAY_S)


def _subscribe_on(sim: SimExchange, conn: Any, op: str, args: Any, req_id: Any) -> None:
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
        conn.send(_reply(conn, op, False, "error:args must be a list of topics", req_id))
        return
    if conn.stream == "private":
        if not conn.authed:
            conn.send(_reply(conn, op, False, "Request not authorized", req_id))
            return
        bad = [a for a in args if a not in PRIVATE_TOPICS and not (a in dcp.TOPICS and sim.dcp.enabled)]
    else:
        symbols = set(sim.engine.instruments)
        bad = [a for a in args if not is_valid_topic(a, symbols)]
    if bad:
        conn.send(_reply(conn, op, False, f"Invalid topic: {','.join(bad)}", req_id))
        return
    if op == "unsubscribe":
        for topic in args:
            sim.hub.unsubscribe(conn.conn, topic)
        conn.send(_reply(conn, op, True, "", req_id))
        return
    already = [a for a in args if a in conn.topics]
    if already:
        conn.send(_reply(conn, op, False, f"error:already subscribed,topic:{','.join(already)}", req_id))
        return
    for topic in args:
        sim.hub.subscribe(conn.conn, topic)
    conn.send(_reply(conn, op, True, "", req_id))
    for topic in args:
        if needs_snapshot(topic):
            snap = sim.feed.snapshot(topic, now_ms())
            if snap is not None:
                conn.send(dumps(snap))
