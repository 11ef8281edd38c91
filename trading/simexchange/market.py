"""Turn played Bybit public messages into the simulator's market and its public streams.

The feed applies each source message to the exchange's books, last prices and
resting orders (through the matching engine), and produces the public messages
subscribers get. Book streams are re-derived as diffs of the exchange's own
book, so every delta is consistent with the snapshot a subscriber got (pybit
crashes on a delete of a level it never saw). ``orderbook.1``, ``tickers`` (when
the source lacks them) and ``kline`` are derived here. Pure Python.
"""

from __future__ import annotations

import calendar
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from trading.marketdata.normalise import LevelParser, parse_levels

from .matching import MatchingEngine
from .models import Changes

logger = logging.getLogger(__name__)

BOOK_DEPTHS = (1, 50)
_NO_ROUTE = ("", "", 0)
TICKER_INTERVAL_MS = 100  # Bybit pushes linear tickers every 100 ms
KLINE_INTERVALS = ("1", "3", "5", "15", "30", "60", "120", "240", "360", "720", "D", "W", "M")
KLINE_KEEP = 1000
_MINUTE = 60_000
_WEEK_OFFSET = 4 * 86_400_000  # the epoch is a Thursday; Bybit's weeks start on Monday


def kline_start(interval: str, ts: int) -> tuple[int, int]:
    """Return (start, end) in ms of the candle of ``interval`` holding ``ts``."""
    if interval == "M":
        t = time.gmtime(ts // 1000)
        start = calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0)) * 1000
        y, mth = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
        return start, calendar.timegm((y, mth, 1, 0, 0, 0)) * 1000 - 1
    if interval == "W":
        span = 7 * 86_400_000
        start = (ts + _WEEK_OFFSET) // span * span - _WEEK_OFFSET
        return start, start + span - 1
    span = 86_400_000 if interval == "D" else int(interval) * _MINUTE
    start = ts // span * span
    return start, start + span - 1


@dataclass(slots=True)
class Candle:
    start: int
    end: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal = Decimal(0)
    turnover: Decimal = Decimal(0)

    def row(self) -> list[str]:
        """Return the REST /v5/market/kline row."""
        return [str(self.start), *(format(v, "f") for v in (self.open, self.high, self.low, self.close)),
                format(self.volume, "f"), format(self.turnover, "f")]

    def ws(self, interval: str, confirm: bool, ts: int) -> dict[str, Any]:
        return {
            "start": self.start, "end": self.end, "interval": interval,
            "open": format(self.open, "f"), "close": format(self.close, "f"),
            "high": format(self.high, "f"), "low": format(self.low, "f"),
            "volume": format(self.volume, "f"), "turnover": format(self.turnover, "f"),
            "confirm": confirm, "timestamp": ts,
        }


@dataclass(slots=True)
class _SymbolFeed:
    ticker: dict[str, str] = field(default_factory=dict)
    source_tickers: bool = False
    pending_ticker: dict[str, str] = field(default_factory=dict)
    last_ticker_push: int = 0
    views: dict[int, tuple[dict[str, str], dict[str, str]]] = field(default_factory=dict)
    u: dict[int, int] = field(default_factory=dict)
    candles: dict[str, OrderedDict[int, Candle]] = field(default_factory=dict)
    book_depth: int | None = None  # depth of the source's book stream


class MarketFeed:
    """Apply source messages to the exchange; emit the public messages to fan out."""

    def __init__(
        self,
        engine: MatchingEngine,
        wanted: Callable[[str], bool] | None = None,
        parse_levels: LevelParser = parse_levels,
    ) -> None:
        self.engine = engine
        self._parse_levels = parse_levels
        self.rejected = 0  # source book messages dropped for bad levels
        self.wanted = wanted or (lambda topic: True)
        self.symbols: dict[str, _SymbolFeed] = {s: _SymbolFeed() for s in engine.instruments}
        # topic -> (kind, symbol, book depth): a source carries a handful of topics, each split once
        self._routes: dict[str, tuple[str, str, int]] = {}
        self._cs = 0
        self._trade_seq = 0

    # -- ingest ----------------------------------------------------------
    def ingest(self, msg: dict[str, Any], now_ms: int) -> tuple[list[dict[str, Any]], Changes]:
        """Apply one source message stamped ``now_ms``; return (public messages, private changes)."""
        kind, symbol, depth = self.route(msg.get("topic"))
        out: list[dict[str, Any]] = []
        changes = Changes()
        if kind == "orderbook":
            self._ingest_book(symbol, depth, msg, now_ms, out, changes)
        elif kind == "publicTrade":
            self._ingest_trades(symbol, msg, now_ms, out, changes)
        elif kind == "tickers":
            self._ingest_ticker(symbol, msg, now_ms, out)
        # kline and depth-1 source messages are ignored: the feed derives its own.
        return out, changes

    def route(self, topic: Any) -> tuple[str, str, int]:
        """(kind, symbol, book depth) of a source topic this feed acts on; ("", "", 0) for any other."""
        route = self._routes.get(topic) if type(topic) is str else _NO_ROUTE
        if route is not None:
            return route
        kind, _, rest = topic.partition(".")
        route = _NO_ROUTE
        if kind == "orderbook":
            depth, _, symbol = rest.partition(".")
            if symbol in self.symbols and depth.isdigit():
                route = (kind, symbol, int(depth))
        elif kind in ("publicTrade", "tickers") and rest in self.symbols:
            route = (kind, rest, 0)
        if len(self._routes) < 4_096:  # bounded: a hostile stream of topics cannot grow it
            self._routes[topic] = route
        return route

    def _ingest_book(
        self, symbol: str, depth: int, msg: dict[str, Any], now: int, out: list[dict[str, Any]], changes: Changes
    ) -> None:
        if not self._apply_book(symbol, depth, msg, now):
            return
        changes.merge(self.engine.on_book(symbol))
        self._emit_book(symbol, now, out, msg.get("type") == "snapshot")
        self._touch_ticker_from_book(symbol)
        self._maybe_flush_ticker(symbol, now, out, force=False)

    def _apply_book(self, symbol: str, depth: int, msg: dict[str, Any], now: int) -> bool:
        """Apply a source book message to the exchange's book; False when it is not the book's depth."""
        feed = self.symbols[symbol]
        if depth == 1:
            return False
        if feed.book_depth is None:
            feed.book_depth = depth
        if depth != feed.book_depth:
            return False  # one book per symbol: the first depth the source carries
        data = msg.get("data") or {}
        bids, asks = self._parse_levels(data.get("b", [])), self._parse_levels(data.get("a", []))
        if bids is None or asks is None:
            self.rejected += 1  # a level that is not two finite numbers: the book stays as it was
            logger.warning("dropped a %s message: a level is not a positive price and a size", msg.get("topic"))
            return False
        book = self.engine.books[symbol]
        u, seq = int(data.get("u", 0)), int(data.get("seq", 0))
        if msg.get("type") == "snapshot":
            book.apply_snapshot(bids, asks, u, seq)
        else:
            book.apply_delta(bids, asks, u, seq)
        book.ts = now
        return True

    def _emit_book(self, symbol: str, now: int, out: list[dict[str, Any]], snapshot: bool) -> None:
        feed = self.symbols[symbol]
        book = self.engine.books[symbol]
        for depth in BOOK_DEPTHS:
            topic = f"orderbook.{depth}.{symbol}"
            if not self.wanted(topic):
                feed.views.pop(depth, None)  # nobody relies on it; a subscriber gets a snapshot
                continue
            new = self._view(symbol, depth)
            old = feed.views.get(depth)
            if depth == 1 or old is None or snapshot:
                if old is not None and depth == 1 and new == old:
                    continue
                feed.views[depth] = new
                feed.u[depth] = feed.u.get(depth, 0) + 1
                out.append(self._book_msg(topic, "snapshot", symbol, new[0], new[1], feed.u[depth], book.seq, now))
                continue
            db, da = _diff(old[0], new[0]), _diff(old[1], new[1])
            if not db and not da:
                continue
            feed.views[depth] = new
            feed.u[depth] = feed.u.get(depth, 0) + 1
            out.append(self._book_msg(topic, "delta", symbol, db, da, feed.u[depth], book.seq, now, diff=True))

    def _view(self, symbol: str, depth: int) -> tuple[dict[str, str], dict[str, str]]:
        spec = self.engine.instruments[symbol]
        book = self.engine.books[symbol]

        def fmt(levels: list[tuple[Decimal, Decimal]]) -> dict[str, str]:
            return {format(p.quantize(spec.tick_size), "f"): format(s.quantize(spec.qty_step), "f") for p, s in levels}

        return fmt(book.levels("Buy", depth)), fmt(book.levels("Sell", depth))

    @staticmethod
    def _book_msg(
        topic: str, kind: str, symbol: str, bids: Any, asks: Any, u: int, seq: int, now: int, diff: bool = False
    ) -> dict[str, Any]:
        if diff:
            b, a = bids, asks
        else:
            b = [[p, s] for p, s in bids.items()]
            a = [[p, s] for p, s in asks.items()]
        return {"topic": topic, "type": kind, "ts": now,
                "data": {"s": symbol, "b": b, "a": a, "u": u, "seq": seq}, "cts": now}

    def _ingest_trades(
        self, symbol: str, msg: dict[str, Any], now: int, out: list[dict[str, Any]], changes: Changes
    ) -> None:
        trades = [t for t in (msg.get("data") or []) if isinstance(t, dict)]
        if not trades:
            return
        spec = self.engine.instruments[symbol]
        stamped = []
        feed = self.symbols[symbol]
        for t in trades:
            price, qty = Decimal(str(t["p"])), Decimal(str(t["v"]))
            prev = self.engine.last_price.get(symbol)
            changes.merge(self.engine.on_trade(symbol, price, qty))
            self._trade_seq += 1
            direction = _tick_direction(prev, price)
            stamped.append({
                "T": now, "s": symbol, "S": t.get("S", "Buy"), "v": t["v"], "p": t["p"],
                "L": t.get("L", direction), "i": t.get("i") or str(uuid.uuid4()), "BT": bool(t.get("BT", False)),
                "seq": t.get("seq", self._trade_seq),
            })
            self._update_candles(symbol, price, qty, now, out)
            if not feed.source_tickers:
                self._touch_ticker_from_trade(symbol, price, qty, direction, spec.tick_size)
        topic = f"publicTrade.{symbol}"
        out.append({"topic": topic, "type": "snapshot", "ts": now, "data": stamped})
        self._maybe_flush_ticker(symbol, now, out, force=True)

    # -- tickers ---------------------------------------------------------
    def _ingest_ticker(self, symbol: str, msg: dict[str, Any], now: int, out: list[dict[str, Any]]) -> None:
        feed = self.symbols[symbol]
        data = msg.get("data") or {}
        if not isinstance(data, dict):
            return
        feed.source_tickers = True
        if msg.get("type") == "snapshot":
            feed.ticker = dict(data)
        else:
            feed.ticker.update(data)
        self._cs += 1
        out.append({"topic": f"tickers.{symbol}", "type": msg.get("type", "delta"), "data": dict(data),
                    "cs": self._cs, "ts": now})

    def _touch_ticker_from_book(self, symbol: str) -> None:
        feed = self.symbols[symbol]
        if feed.source_tickers:
            return
        spec = self.engine.instruments[symbol]
        book = self.engine.books[symbol]
        for side, best in (("bid1", book.best_bid()), ("ask1", book.best_ask())):
            if best is None:
                continue
            self._set_ticker(symbol, f"{side}Price", format(best[0].quantize(spec.tick_size), "f"))
            self._set_ticker(symbol, f"{side}Size", format(best[1].quantize(spec.qty_step), "f"))

    def _touch_ticker_from_trade(
        self, symbol: str, price: Decimal, qty: Decimal, direction: str, tick: Decimal
    ) -> None:
        feed = self.symbols[symbol]
        p = format(price.quantize(tick), "f")
        t = feed.ticker
        high = max(Decimal(t.get("highPrice24h") or p), price)
        low = min(Decimal(t.get("lowPrice24h") or p), price)
        prev24 = Decimal(t.get("prevPrice24h") or p)
        self._set_ticker(symbol, "lastPrice", p)
        self._set_ticker(symbol, "markPrice", p)
        self._set_ticker(symbol, "indexPrice", p)
        self._set_ticker(symbol, "tickDirection", direction)
        self._set_ticker(symbol, "highPrice24h", format(high.quantize(tick), "f"))
        self._set_ticker(symbol, "lowPrice24h", format(low.quantize(tick), "f"))
        self._set_ticker(symbol, "prevPrice24h", format(prev24.quantize(tick), "f"))
        self._set_ticker(symbol, "price24hPcnt", format(((price - prev24) / prev24).quantize(Decimal("0.000001")), "f"))
        vol = Decimal(t.get("volume24h") or "0") + qty
        turnover = Decimal(t.get("turnover24h") or "0") + qty * price
        self._set_ticker(symbol, "volume24h", format(vol, "f"))
        self._set_ticker(symbol, "turnover24h", format(turnover.quantize(Decimal("0.0001")), "f"))

    def _set_ticker(self, symbol: str, key: str, value: str) -> None:
        feed = self.symbols[symbol]
        if not feed.ticker:
            feed.ticker = self._ticker_defaults(symbol)
        if feed.ticker.get(key) != value:
            feed.ticker[key] = value
            feed.pending_ticker[key] = value

    def _ticker_defaults(self, symbol: str) -> dict[str, str]:
        return {
            "symbol": symbol, "tickDirection": "ZeroPlusTick", "price24hPcnt": "0", "lastPrice": "",
            "prevPrice24h": "", "highPrice24h": "", "lowPrice24h": "", "prevPrice1h": "", "markPrice": "",
            "indexPrice": "", "openInterest": "0", "openInterestValue": "0", "turnover24h": "0",
            "volume24h": "0", "fundingRate": "0.0001", "nextFundingTime": "0",
            "bid1Price": "", "bid1Size": "", "ask1Price": "", "ask1Size": "",
        }

    def _maybe_flush_ticker(self, symbol: str, now: int, out: list[dict[str, Any]], *, force: bool) -> None:
        feed = self.symbols[symbol]
        if feed.source_tickers or not feed.pending_ticker:
            return
        if not force and now - feed.last_ticker_push < TICKER_INTERVAL_MS:
            return
        topic = f"tickers.{symbol}"
        feed.last_ticker_push = now
        data = {"symbol": symbol, **feed.pending_ticker}
        feed.pending_ticker = {}
        if self.wanted(topic):
            self._cs += 1
            out.append({"topic": topic, "type": "delta", "data": data, "cs": self._cs, "ts": now})

    # -- klines ----------------------------------------------------------
    def _update_candles(self, symbol: str, price: Decimal, qty: Decimal, now: int, out: list[dict[str, Any]]) -> None:
        feed = self.symbols[symbol]
        for interval in KLINE_INTERVALS:
            start, end = kline_start(interval, now)
            candles = feed.candles.setdefault(interval, OrderedDict())
            candle = candles.get(start)
            topic = f"kline.{interval}.{symbol}"
            if candle is None:
                last = next(reversed(candles.values()), None)
                if last is not None and self.wanted(topic):
                    out.append({"topic": topic, "type": "snapshot", "ts": now,
                                "data": [last.ws(interval, True, now)]})
                candle = Candle(start, end, price, price, price, price)
                candles[start] = candle
                while len(candles) > KLINE_KEEP:
                    candles.popitem(last=False)
            candle.high = max(candle.high, price)
            candle.low = min(candle.low, price)
            candle.close = price
            candle.volume += qty
            candle.turnover += qty * price
            if self.wanted(topic):
                out.append({"topic": topic, "type": "snapshot", "ts": now, "data": [candle.ws(interval, False, now)]})

    def klines(self, symbol: str, interval: str, start: int | None, end: int | None, limit: int) -> list[list[str]]:
        """Return REST kline rows, newest first."""
        candles = self.symbols[symbol].candles.get(interval, OrderedDict())
        rows = [c for c in reversed(candles.values())
                if (start is None or c.start >= start) and (end is None or c.start <= end)]
        return [c.row() for c in rows[:limit]]

    # -- snapshots for new subscribers ------------------------------------
    def snapshot(self, topic: str, now: int) -> dict[str, Any] | None:
        """Return the snapshot a (re)subscriber of ``topic`` must get first, if the topic has one."""
        kind, _, rest = topic.partition(".")
        if kind == "orderbook":
            depth_s, _, symbol = rest.partition(".")
            depth = int(depth_s)
            feed = self.symbols[symbol]
            view = self._view(symbol, depth)
            if depth != 1 or depth not in feed.views:
                feed.views[depth] = view
            feed.u[depth] = max(1, feed.u.get(depth, 0))
            book = self.engine.books[symbol]
            return self._book_msg(topic, "snapshot", symbol, view[0], view[1], feed.u[depth], book.seq, now)
        if kind == "tickers":
            feed = self.symbols[rest]
            data = dict(feed.ticker) if feed.ticker else self._ticker_defaults(rest)
            self._cs += 1
            return {"topic": topic, "type": "snapshot", "data": data, "cs": self._cs, "ts": now}
        return None

    def ticker(self, symbol: str) -> dict[str, str]:
        """Return the current ticker of a symbol (for /v5/market/tickers)."""
        feed = self.symbols[symbol]
        return dict(feed.ticker) if feed.ticker else self._ticker_defaults(symbol)


def _tick_direction(prev: Decimal | None, price: Decimal) -> str:
    if prev is None or price == prev:
        return "ZeroPlusTick"
    return "PlusTick" if price > prev else "MinusTick"


def _diff(old: dict[str, str], new: dict[str, str]) -> list[list[str]]:
    """Return Bybit delta entries turning ``old`` into ``new`` (size "0" deletes)."""
    entries = [[p, s] for p, s in new.items() if old.get(p) != s]
    entries += [[p, "0"] for p in old if p not in new]
    return entries


def is_valid_topic(topic: str, symbols: set[str]) -> bool:
    """Say whether the public linear stream serves ``topic``."""
    parts = topic.split(".")
    if len(parts) == 2 and parts[0] in ("tickers", "publicTrade"):
        return parts[1] in symbols
    if len(parts) == 3 and parts[0] == "orderbook":
        return parts[1] in {str(d) for d in BOOK_DEPTHS} and parts[2] in symbols
    if len(parts) == 3 and parts[0] == "kline":
        return parts[1] in KLINE_INTERVALS and parts[2] in symbols
    return False
