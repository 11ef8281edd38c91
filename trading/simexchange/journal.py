"""The exchange's own record: every order state, execution and position size change, numbered.

Every change of the account reaches the private stream through
``SimExchange.publish``, and the journal is written there, from the same
``Changes``, so nothing changes without a record. Each record is
``{"seq", "ts", "type": "order" | "execution" | "position", ..., "origin"}``;
``seq`` counts 1, 2, 3... and is never reused (it is kept in the state file and
checked against the history file at start). Within one operation the records
follow cause and effect, so a checker can replay them:

1. an order the operation created, as it was accepted (``New``, nothing filled);
2. the operation's executions, in fill order;
3. every order it touched, as it left it (skipped for a new order still as accepted);
4. every position whose size it changed.

An order record's ``cumExecQty`` therefore equals the sum of the executions of
that order recorded before it, and a position's size the signed sum of its fills
before it (until a ``/sim/reset``, recorded as cancels and flat positions).
``origin`` says who caused a change: ``api`` (a signed ``/v5`` request),
``sim`` (a ``/sim`` action, behind the client's back) or ``market`` (played
market data: a resting order filled, a TP/SL triggered); ``orderOrigin`` who
created the order. A refused request changes nothing and leaves no record.

The last ``MEMORY_RECORDS`` records are kept in memory; the history file
(``history_file``) holds the rest. Pure Python, like the engine it records.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Collection, Iterable
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import Any

import msgspec

from .account import Account
from .history_file import MAX_FILE_BYTES, HistoryFile
from .models import Changes, Execution, Order
from .payloads import money, price_str, qty_str

log = logging.getLogger(__name__)

ORIGIN_API = "api"
ORIGIN_SIM = "sim"
ORIGIN_MARKET = "market"
ORIGIN_DCP = "dcp"  # Disconnection Cancel All fired: every dcp.future connection gone for the window
ORIGINS = frozenset({ORIGIN_API, ORIGIN_SIM, ORIGIN_MARKET, ORIGIN_DCP})
UNKNOWN_ORIGIN = "unknown"  # an order created before its simulator kept origins
MEMORY_RECORDS = 10_000

_encode = msgspec.json.Encoder().encode


def order_fields(account: Account, o: Order) -> dict[str, Any]:
    """Return what an order record says of ``o``: identity, terms, status and filled quantity."""
    spec = account.instruments[o.symbol]
    return {
        "orderId": o.order_id, "orderLinkId": o.link_id, "symbol": o.symbol, "side": o.side,
        "orderType": o.order_type, "qty": qty_str(spec, o.qty), "price": price_str(spec, o.price),
        "reduceOnly": o.reduce_only, "status": o.status, "cumExecQty": qty_str(spec, o.cum_qty),
        "cancelType": o.cancel_type, "createType": o.create_type, "stopOrderType": o.stop_order_type,
        "takeProfit": price_str(spec, o.take_profit), "stopLoss": price_str(spec, o.stop_loss),
        "createdTime": str(o.created_ms), "updatedTime": str(o.updated_ms),
    }


def accepted_fields(account: Account, o: Order) -> dict[str, Any]:
    """Return the order record of ``o`` as it was accepted, before anything filled or closed it."""
    spec = account.instruments[o.symbol]
    return {**order_fields(account, o), "status": "New", "cumExecQty": qty_str(spec, Decimal(0)),
            "cancelType": "UNKNOWN", "updatedTime": str(o.created_ms)}


def execution_fields(account: Account, x: Execution) -> dict[str, Any]:
    """Return what an execution record says of the fill ``x``."""
    spec = account.instruments[x.symbol]
    return {
        "execId": x.exec_id, "orderId": x.order_id, "orderLinkId": x.link_id, "symbol": x.symbol,
        "side": x.side, "orderType": x.order_type, "execQty": qty_str(spec, x.exec_qty),
        "execPrice": price_str(spec, x.exec_price), "execFee": money(x.exec_fee), "isMaker": x.is_maker,
        "closedSize": qty_str(spec, x.closed_size), "execTime": str(x.exec_time), "createType": x.create_type,
        "stopOrderType": x.stop_order_type,
    }


def position_fields(account: Account, symbol: str, size: Decimal, avg_price: Decimal) -> dict[str, Any]:
    """Return a position record's fields: ``size`` signed (long positive, short negative)."""
    spec = account.instruments[symbol]
    if not size:
        return {"symbol": symbol, "size": "0", "avgPrice": "0"}
    return {"symbol": symbol, "size": qty_str(spec, size), "avgPrice": money(avg_price)}


class Journal:
    """The numbered history of one simulated account, in memory and (with a path) on disk."""

    def __init__(
        self, path: Path | None, *, memory: int = MEMORY_RECORDS, max_file_bytes: int = MAX_FILE_BYTES
    ) -> None:
        self.file = HistoryFile(path, max_bytes=max_file_bytes) if path is not None else None
        self.seq = 0  # the last seq given
        self._memory: deque[dict[str, Any]] = deque(maxlen=memory)
        self._pending: list[bytes] = []  # lines not yet on disk: written with the next state write
        self._origins: dict[str, str] = {}  # orderId -> who created it, for the orders the account remembers
        self._sizes: dict[str, Decimal] = {}  # symbol -> position size last recorded

    # -- start and saved form ------------------------------------------------------------
    def restore(self, saved: Any) -> None:
        """Take the seq and the order creators a state file kept; ignore anything else in it."""
        if not isinstance(saved, dict):
            return
        seq = saved.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool) and seq > self.seq:
            self.seq = seq
        origins = saved.get("orderOrigins")
        if isinstance(origins, dict):
            self._origins.update({k: v for k, v in origins.items() if isinstance(k, str) and v in ORIGINS})

    def start(self, account: Account, *, fresh: bool) -> None:
        """Take up the account as it is; a ``fresh`` history moves the old one aside, else seq goes on after it."""
        self._sizes = {s: p.size for s, p in account.positions.items() if p.size}
        for order_id in account.orders:
            self._origins.setdefault(order_id, UNKNOWN_ORIGIN)  # known orders are never "created" again
        if self.file is None:
            return
        try:
            if fresh:
                self.file.start_new()
                return
        except OSError:
            log.exception("simexchange: cannot move the history %s aside; it goes on", self.file.path)
        try:
            self.seq = max(self.seq, self.file.recover())
        except OSError:
            log.exception("simexchange: cannot read the history %s", self.file.path)

    def saved_form(self, remembered: Collection[str]) -> dict[str, Any]:
        """Return what the state file keeps: the seq, and the creators of the orders the account remembers."""
        self._origins = {k: v for k, v in self._origins.items() if k in remembered}
        return {"seq": self.seq, "orderOrigins": dict(self._origins)}

    # -- records ---------------------------------------------------------------------------
    def record(self, account: Account, changes: Changes, origin: str, ts: int) -> None:
        """Record what one operation caused by ``origin`` changed, in cause-and-effect order."""
        accepted: dict[str, dict[str, Any]] = {}
        for o in changes.orders:
            if o.order_id not in self._origins:
                self._origins[o.order_id] = origin
                accepted[o.order_id] = accepted_fields(account, o)
                self._add("order", ts, accepted[o.order_id], origin, origin)
        for x in changes.executions:
            self._add("execution", ts, execution_fields(account, x), origin, self._creator(x.order_id))
        for o in changes.orders:
            fields = order_fields(account, o)
            if fields != accepted.get(o.order_id):
                self._add("order", ts, fields, origin, self._creator(o.order_id))
        for symbol in changes.positions:
            pos = account.positions.get(symbol)
            size, avg = (pos.size, pos.avg_price) if pos is not None else (Decimal(0), Decimal(0))
            if size != self._sizes.get(symbol, Decimal(0)):
                self._sizes[symbol] = size
                self._add("position", ts, position_fields(account, symbol, size, avg), origin)

    def record_reset(self, account: Account, ts: int) -> None:
        """Record a ``/sim/reset`` before it happens: open orders cancelled, positions flat."""
        for o in account.open_orders():
            fields = {**order_fields(account, o), "status": "Cancelled", "cancelType": "CancelByAdmin",
                      "updatedTime": str(ts)}
            self._add("order", ts, fields, ORIGIN_SIM, self._creator(o.order_id))
        for symbol, pos in account.positions.items():
            if pos.size:
                self._add("position", ts, position_fields(account, symbol, Decimal(0), Decimal(0)), ORIGIN_SIM)
        self._sizes = {}

    def creators(self, order_ids: Iterable[str]) -> dict[str, str]:
        """Return who created each of ``order_ids`` (for the change log, which keeps them with the state)."""
        return {i: self._creator(i) for i in order_ids}

    def _creator(self, order_id: str) -> str:
        return self._origins.get(order_id, UNKNOWN_ORIGIN)

    def _add(self, kind: str, ts: int, fields: dict[str, Any], origin: str, order_origin: str | None = None) -> None:
        self.seq += 1
        record = {"seq": self.seq, "ts": ts, "type": kind, **fields, "origin": origin}
        if order_origin is not None:
            record["orderOrigin"] = order_origin
        self._memory.append(record)
        if self.file is not None:
            self._pending.append(_encode(record) + b"\n")

    # -- disk and reads -----------------------------------------------------------------------
    def flush(self) -> None:
        """Append the records not yet on disk (called with the state write: no fsync of its own).

        A write that fails is logged with the seqs it lost and not retried: the
        records stay in memory, the file shows a gap, the exchange goes on.
        """
        if not self._pending or self.file is None:
            return
        lines, self._pending = self._pending, []
        try:
            self.file.append(lines)
        except OSError:
            log.exception("simexchange: history records %s..%s not written to %s",
                          self.seq - len(lines) + 1, self.seq, self.file.path)

    def close(self) -> None:
        self.flush()
        if self.file is not None:
            self.file.close()

    def read(self, after: int, limit: int) -> list[dict[str, Any]]:
        """Return up to ``limit`` records with seq above ``after``, oldest first: from memory, else the file.

        Records older than both hold are gone: the first seq returned is then
        above ``after + 1``.
        """
        memory = self._memory
        if after >= self.seq:
            return []
        if self.file is None or (memory and after + 1 >= memory[0]["seq"]):
            return self._from_memory(after, limit)
        self.flush()
        records = self.file.read(after, limit)
        if len(records) < limit:  # the file ends (or lost a write): memory may hold what comes next
            last = records[-1]["seq"] if records else after
            records += self._from_memory(last, limit - len(records))
        return records

    def _from_memory(self, after: int, limit: int) -> list[dict[str, Any]]:
        memory = self._memory
        if not memory:
            return []
        start = max(0, after + 1 - memory[0]["seq"])  # seqs in memory are consecutive
        return list(islice(memory, start, start + limit))
