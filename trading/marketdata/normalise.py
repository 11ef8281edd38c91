"""Turn Bybit V5 public messages into ``MarketEvent`` values, surviving any input.

The normaliser keeps its own per-symbol order book (size maps and the touch,
kept as levels change) and the parsed last price and touch of each symbol's
ticker. A message it cannot use produces no events and is counted in
``rejected`` by reason; it never raises to the caller and never leaves a book
half-updated, because every message is validated before anything is applied.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from trading.marketdata.events import BOOK, TICKER, TRADE, MarketEvent, event_of_fields
from trading.marketdata.messages import KLINE, ORDERBOOK, PUBLIC_TRADE, TICKERS, split_topic
from trading.marketdata.wire import ParsedLevels, PublicDecoder, WireError

# Rejection reasons, the keys of ``Normaliser.rejected``.
NOT_JSON = "not_json"  # raw text only (``normalise_raw``); the last reason is in ``Normaliser.last_error``
NOT_OBJECT = "not_object"
MISSING_TOPIC = "missing_topic"
UNKNOWN_TOPIC = "unknown_topic"
MISSING_FIELD = "missing_field"
BAD_NUMBER = "bad_number"
BAD_TYPE = "bad_type"
SYMBOL_MISMATCH = "symbol_mismatch"
DELTA_BEFORE_SNAPSHOT = "delta_before_snapshot"
ABSENT_LEVEL_DELETE = "absent_level_delete"
STALE_UPDATE = "stale_update"
CROSSED_BOOK = "crossed_book"
MALFORMED = "malformed"  # last resort: a shape the checks above did not foresee

# Anomalies that still produce events, the keys of ``Normaliser.warnings``.
UPDATE_GAP = "update_gap"  # orderbook u skipped ahead: messages were lost, the book may be stale
ONE_SIDED_BOOK = "one_sided_book"  # applied, but no mid to report

_INF = math.inf
_TICKER_FIELDS = ("lastPrice", "bid1Price", "ask1Price", "bid1Size", "ask1Size")
_TICKER_INDEX = {key: i for i, key in enumerate(_TICKER_FIELDS)}
_NO_TICKER: tuple[float | None, ...] = (None, 0.0, 0.0, 0.0, 0.0)  # a snapshot without the touch reports 0
_SIDES = {"Buy": 1, "Sell": -1}


class _Book:
    """One symbol's book: price to size per side, and the touch kept as levels change.

    The best bid and ask move only when a level beyond them is set or they are
    deleted (then a max/min over the side): cheaper than keeping sorted price lists.
    """

    __slots__ = ("bid_sizes", "ask_sizes", "best_bid", "best_ask", "u")

    def __init__(self, u: int | None, bids: dict[float, float], asks: dict[float, float]) -> None:
        self.bid_sizes = bids
        self.ask_sizes = asks
        self.best_bid = max(bids, default=0.0)
        self.best_ask = min(asks, default=_INF)
        self.u = u


def _apply_side(sizes: dict[float, float], levels: dict[float, float], deletes: list[float], best: float,
                is_bid: bool) -> float:
    """Apply validated levels to one side (``deletes``: its size-0 prices, all known); return its new best price.

    Sizes are set in one C call and the deletes removed after. No price beyond the
    best can be a delete (that level would be unknown), so the new best is the
    better of the old one and the levels' own, unless the old best was deleted.
    An empty side's best is 0 for bids, inf for asks, so any price beats it.
    """
    sizes.update(levels)
    if deletes:
        for p in deletes:
            del sizes[p]
        if best in deletes:
            if is_bid:
                return max(sizes) if sizes else 0.0
            return min(sizes) if sizes else _INF
    if levels:
        if is_bid:
            edge = max(levels)
            return edge if edge > best else best
        edge = min(levels)
        return edge if edge < best else best
    return best


def parse_levels(raw: Any) -> dict[float, float] | None:
    """Parse ``[[price, size], ...]`` into floats, price to size, the last of a repeated price winning;
    None when any level is not two finite numbers (a boolean is none). Levels the typed decoder parsed come
    back as they are."""
    if type(raw) is ParsedLevels:
        return raw
    if not isinstance(raw, list):
        return None
    out = {}
    try:
        for p, q in raw:
            if type(p) is bool or type(q) is bool:  # float(True) is 1.0: a boolean is no price
                return None
            price, size = float(p), float(q)
            if not (0.0 < price < _INF and 0.0 <= size < _INF):  # also false for NaN
                return None
            out[price] = size
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer too large for a float
        return None
    return out


def _number(value: Any) -> float | None:
    """Parse a Bybit numeric string; None when it is not a finite number."""
    if isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return x if -_INF < x < _INF else None


LevelParser = Callable[[Any], "dict[float, float] | None"]


class SharedLevels:
    """``parse_levels`` for two readers of the same messages on one thread: REPLAY's exchange and client.

    The last two lists parsed are remembered by identity, so the client's parse of a
    book message the exchange has just parsed costs one comparison. The answer is
    shared: readers must not change it. Identity is safe because the lists are held
    here, so their ids cannot be reused while remembered.
    """

    __slots__ = ("_raw", "_parsed", "_next")

    def __init__(self) -> None:
        self._raw: list[Any] = [None, None]
        self._parsed: list[dict[float, float] | None] = [None, None]
        self._next = 0

    def __call__(self, raw: Any) -> dict[float, float] | None:
        if type(raw) is ParsedLevels:  # parsed by the typed decoder: nothing to share
            return raw
        remembered = self._raw
        if raw is remembered[0]:
            return self._parsed[0]
        if raw is remembered[1]:
            return self._parsed[1]
        parsed = parse_levels(raw)
        slot = self._next
        remembered[slot], self._parsed[slot], self._next = raw, parsed, slot ^ 1
        return parsed


class Normaliser:
    """Convert Bybit public messages to ``MarketEvent`` lists; count what it cannot use."""

    def __init__(self, parse_levels: LevelParser = parse_levels) -> None:
        self._parse_levels = parse_levels
        self.rejected: dict[str, int] = {}
        self.warnings: dict[str, int] = {}
        self.ignored = 0  # known topics that carry no event (kline)
        self.last_error = ""  # why the last raw text was not JSON (``normalise_raw``)
        self._decoder = PublicDecoder()
        self._books: dict[str, _Book] = {}
        self._tickers: dict[str, list[float | None]] = {}  # _TICKER_FIELDS, parsed
        self._routes: dict[str, tuple[Callable[[dict[str, Any], str, int], list[MarketEvent]], str]] = {}
        self._handlers = {ORDERBOOK: self._on_book, PUBLIC_TRADE: self._on_trades, TICKERS: self._on_ticker}

    def normalise(self, message: Any) -> list[MarketEvent]:
        """Return the events of one message; an unusable message returns [] and is counted."""
        if not isinstance(message, dict):
            return self._reject(NOT_OBJECT)
        topic = message.get("topic")
        route = self._routes.get(topic) if isinstance(topic, str) else None
        if route is None:
            if not isinstance(topic, str):
                return self._reject(MISSING_TOPIC)
            parsed = split_topic(topic)
            if parsed is None:
                return self._reject(UNKNOWN_TOPIC)
            kind, symbol = parsed
            if kind == KLINE:
                self.ignored += 1
                return []
            route = self._routes[topic] = (self._handlers[kind], symbol)  # only known topics are cached
        ts = message.get("ts")
        if type(ts) is not int:
            return self._reject(MISSING_FIELD if ts is None else BAD_NUMBER)
        handler, symbol = route
        try:
            return handler(message, symbol, ts)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            return self._reject(MALFORMED)

    def normalise_raw(self, raw: bytes | str) -> list[MarketEvent]:
        """Decode one raw message (typed, see ``wire``) and return its events; text that is not JSON is counted."""
        try:
            message = self._decoder.decode(raw)
        except WireError as exc:
            self.last_error = exc.reason
            return self._reject(NOT_JSON)
        return self.normalise(message)

    def normalise_all(self, messages: Iterable[Any]) -> Iterator[MarketEvent]:
        """Yield the events of many messages in order."""
        normalise = self.normalise
        for message in messages:
            yield from normalise(message)

    def best(self, symbol: str) -> tuple[float, float, float, float] | None:
        """Return (bid, bid_qty, ask, ask_qty) of a symbol's current book, or None without a two-sided book."""
        book = self._books.get(symbol)
        if book is None or not book.bid_sizes or not book.ask_sizes:
            return None
        bid, ask = book.best_bid, book.best_ask
        return bid, book.bid_sizes[bid], ask, book.ask_sizes[ask]

    def _reject(self, reason: str) -> list[MarketEvent]:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        return []

    def _warn(self, reason: str) -> None:
        self.warnings[reason] = self.warnings.get(reason, 0) + 1

    def _on_book(self, message: dict[str, Any], symbol: str, ts: int) -> list[MarketEvent]:
        """Apply an orderbook snapshot or delta, then report the touch."""
        data = message.get("data")
        if not isinstance(data, dict) or "b" not in data or "a" not in data:
            return self._reject(MISSING_FIELD)
        if data.get("s", symbol) != symbol:
            return self._reject(SYMBOL_MISMATCH)
        bids, asks = raw_bids, raw_asks = data["b"], data["a"]
        if type(bids) is not ParsedLevels or type(asks) is not ParsedLevels:  # typed levels need no parse
            bids, asks = self._parse_levels(bids), self._parse_levels(asks)
        if bids is None or asks is None:
            return self._reject(BAD_NUMBER)
        u = data.get("u")
        if u is not None and type(u) is not int:
            return self._reject(BAD_NUMBER)
        kind = message.get("type")
        if kind == "snapshot" or (kind == "delta" and u == 1):  # u == 1: Bybit restarted, a fresh book
            book = _Book(u, {p: q for p, q in bids.items() if q}, {p: q for p, q in asks.items() if q})
            self._books[symbol] = book
        elif kind == "delta":
            book = self._books.get(symbol)  # type: ignore[assignment]
            if book is None:
                return self._reject(DELTA_BEFORE_SNAPSHOT)
            problem = self._apply_delta(book, bids, asks, u, len(raw_bids), len(raw_asks))
            if problem is not None:
                return self._reject(problem)
        else:
            return self._reject(BAD_TYPE)
        if not book.bid_sizes or not book.ask_sizes:
            self._warn(ONE_SIDED_BOOK)
            return []
        bid, ask = book.best_bid, book.best_ask
        if bid >= ask:
            del self._books[symbol]  # corrupt: wait for the next snapshot rather than report nonsense
            return self._reject(CROSSED_BOOK)
        # (kind, symbol, ts, price, qty, side, bid, ask, bid_qty, ask_qty)
        return [event_of_fields((BOOK, symbol, ts, (bid + ask) * 0.5, 0.0, 0, bid, ask, book.bid_sizes[bid],
                                 book.ask_sizes[ask]))]  # fmt: skip

    def _apply_delta(
        self, book: _Book, bids: dict[float, float], asks: dict[float, float], u: int | None, sent_bids: int,
        sent_asks: int,
    ) -> str | None:
        """Apply a validated delta to ``book``; return why it was refused instead (the book is then untouched).

        ``sent_bids`` and ``sent_asks`` count the levels as sent, before parsing.
        """
        if u is not None and book.u is not None:
            if u <= book.u:
                return STALE_UPDATE
            if u != book.u + 1:
                self._warn(UPDATE_GAP)
        if len(bids) != sent_bids or len(asks) != sent_asks:
            return MALFORMED  # a price twice in one side: which size is meant?
        bid_sizes, ask_sizes = book.bid_sizes, book.ask_sizes
        bid_deletes = [p for p, q in bids.items() if q == 0.0]
        ask_deletes = [p for p, q in asks.items() if q == 0.0]
        if (bid_deletes and not all(map(bid_sizes.__contains__, bid_deletes))) or (
            ask_deletes and not all(map(ask_sizes.__contains__, ask_deletes))
        ):
            return ABSENT_LEVEL_DELETE
        book.best_bid = _apply_side(bid_sizes, bids, bid_deletes, book.best_bid, True)
        book.best_ask = _apply_side(ask_sizes, asks, ask_deletes, book.best_ask, False)
        if u is not None:
            book.u = u
        return None

    def _on_trades(self, message: dict[str, Any], symbol: str, ts: int) -> list[MarketEvent]:
        """Return one TRADE per fill, stamped with the match time T; any bad fill rejects the message."""
        data = message.get("data")
        if not isinstance(data, list):
            return self._reject(MISSING_FIELD)
        events = []
        for fill in data:
            if not isinstance(fill, dict):
                return self._reject(MALFORMED)
            if fill.get("s", symbol) != symbol:
                return self._reject(SYMBOL_MISMATCH)
            side, t, p, v = _SIDES.get(fill.get("S")), fill.get("T"), fill.get("p"), fill.get("v")  # type: ignore[arg-type]
            if side is None or t is None or p is None or v is None:
                return self._reject(MISSING_FIELD)
            price, qty = _number(p), _number(v)
            if type(t) is not int or price is None or qty is None or price <= 0.0 or qty <= 0.0:
                return self._reject(BAD_NUMBER)
            events.append(event_of_fields((TRADE, symbol, t, price, qty, side, 0.0, 0.0, 0.0, 0.0)))
        return events

    def _on_ticker(self, message: dict[str, Any], symbol: str, ts: int) -> list[MarketEvent]:
        """Merge a tickers snapshot or delta and report last price with the touch."""
        data = message.get("data")
        if not isinstance(data, dict):
            return self._reject(MISSING_FIELD)
        if data.get("symbol", symbol) != symbol:
            return self._reject(SYMBOL_MISMATCH)
        kind = message.get("type")
        if kind == "snapshot":
            known = _NO_TICKER
        elif kind == "delta":
            known = self._tickers.get(symbol)  # type: ignore[assignment]
            if known is None:
                return self._reject(DELTA_BEFORE_SNAPSHOT)
        else:
            return self._reject(BAD_TYPE)
        # Only the fields an event carries are kept, parsed; a delta parses only what it changes.
        values = list(known)
        for key, value in data.items():  # a typed delta holds only the fields it changes, and the symbol
            i = _TICKER_INDEX.get(key)
            if i is not None:
                # a float from the typed decoder needs only the finiteness check _number makes
                values[i] = value if type(value) is float and -_INF < value < _INF else _number(value)
        last = values[0]
        if last is None:
            return self._reject(BAD_NUMBER if "lastPrice" in data else MISSING_FIELD)
        if None in values or last <= 0.0 or min(values) < 0.0:  # type: ignore[type-var,operator]
            return self._reject(BAD_NUMBER)  # checked before storing, so a bad delta changes nothing
        self._tickers[symbol] = values
        last, bid, ask, bid_qty, ask_qty = values
        return [event_of_fields((TICKER, symbol, ts, last, 0.0, 0, bid, ask, bid_qty, ask_qty))]  # type: ignore[arg-type]
