"""Generate a seeded Bybit public market for several symbols at once.

Each symbol has a hidden fair price that diffuses with regime-dependent
volatility, drift and jumps; a Markov chain switches the regime between calm,
trending and stressed. Around the fair price the model keeps a 50-level book in
integer ticks and steps, taker orders arrive as a Hawkes process and sweep that
book, and makers re-quote it. The output is the stream Bybit would send:
``orderbook.50`` snapshot then deltas against the published book, ``publicTrade``
fills at or through the touch, ``tickers`` snapshot then deltas, and optionally
``kline.1``. One ``random.Random(seed)`` drives everything and events are ordered
by a heap with a counter tie-break, so the same arguments give the same bytes.

The parameters live in ``market_model``, one symbol's dynamics in
``symbol_market``; this module starts the symbols and interleaves their events.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Iterator, Mapping
from typing import Any

from trading.marketdata.instruments import DEFAULT_INSTRUMENTS, InstrumentSpec
from trading.marketdata.market_model import MarketModelConfig
from trading.marketdata.symbol_market import SymbolMarket, random_tables

_BOOK, _TRADE, _TICKER, _KLINE = 0, 1, 2, 3
_Event = tuple[float, int, int, SymbolMarket]  # (time, tie-break, kind, symbol), ordered by the heap


class MarketGenerator:
    """A seeded multi-symbol market; iterate ``messages()`` once, read ``regime()`` while doing so."""

    def __init__(
        self,
        symbols: list[str],
        seed: int,
        start_ms: int,
        *,
        config: MarketModelConfig | None = None,
        instruments: Mapping[str, InstrumentSpec] | None = None,
    ) -> None:
        specs = instruments if instruments is not None else DEFAULT_INSTRUMENTS
        unknown = [s for s in symbols if s not in specs]
        if unknown:
            raise ValueError(f"no instrument spec for {', '.join(unknown)}")
        if len(set(symbols)) != len(symbols):
            raise ValueError("symbols must be distinct")
        self.config = config or MarketModelConfig()
        self.start_ms = start_ms
        self._rng = random.Random(seed)
        tables = random_tables(self._rng)
        self._symbols = {s: SymbolMarket(specs[s], self.config, self._rng, tables, start_ms) for s in symbols}

    def regime(self, symbol: str) -> str:
        """Return the name of the regime the symbol is in now (hidden from the stream)."""
        return self._symbols[symbol].reg.name

    def messages(self, *, max_messages: int | None = None, duration_ms: int | None = None) -> Iterator[dict[str, Any]]:
        """Yield messages in time order until ``max_messages`` or ``duration_ms`` is reached (else forever)."""
        limit = math.inf if max_messages is None else max_messages
        end = math.inf if duration_ms is None else self.start_ms + duration_ms
        if limit <= 0 or self.start_ms >= end:
            return
        count = 0
        for snapshot in self._snapshots():
            yield snapshot
            count += 1
            if count >= limit:
                return
        cfg, rng = self.config, self._rng
        order = itertools.count()
        heap = self._first_events(order)
        push, pop = heapq.heappush, heapq.heappop
        msg: dict[str, Any] | None
        while True:
            t, _, kind, sym = pop(heap)
            if t >= end:
                return
            if kind == _BOOK:
                msg = sym.book_tick(t)
                push(heap, (t + sym.book_wait(), next(order), _BOOK, sym))
            elif kind == _TRADE:
                msg = sym.trade(t)
                push(heap, (sym.next_trade_time(t), next(order), _TRADE, sym))
            elif kind == _TICKER:
                msg = sym.ticker_tick(t)
                push(heap, (t + cfg.ticker_interval_ms, next(order), _TICKER, sym))
            else:
                msg = sym.kline_tick(t)
                push(heap, (t + cfg.kline_push_ms + rng.random(), next(order), _KLINE, sym))
            if msg is not None:
                yield msg
                count += 1
                if count >= limit:
                    return

    def _snapshots(self) -> Iterator[dict[str, Any]]:
        """Yield the book and ticker snapshot of each symbol at the start, as a fresh subscriber gets them."""
        start = self.start_ms
        for sym in self._symbols.values():
            yield from (sym.book_snapshot(start), sym.ticker_snapshot(start))

    def _first_events(self, order: Iterator[int]) -> list[_Event]:
        """Return the heap of each symbol's first book push, taker order, ticker push and (optionally) candle."""
        start, cfg = self.start_ms, self.config
        heap: list[_Event] = []
        push = heapq.heappush
        for i, sym in enumerate(self._symbols.values()):
            push(heap, (start + sym.book_wait(), next(order), _BOOK, sym))
            push(heap, (sym.next_trade_time(float(start)), next(order), _TRADE, sym))
            push(heap, (start + cfg.ticker_interval_ms + i, next(order), _TICKER, sym))
            if cfg.klines:
                push(heap, (start + cfg.kline_push_ms + i, next(order), _KLINE, sym))
        return heap


def generate_messages(
    symbols: list[str],
    seed: int,
    start_ms: int,
    *,
    max_messages: int | None = None,
    duration_ms: int | None = None,
    config: MarketModelConfig | None = None,
    instruments: Mapping[str, InstrumentSpec] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield Bybit public messages of a seeded market for ``symbols``, time-ordered across them."""
    gen = MarketGenerator(symbols, seed, start_ms, config=config, instruments=instruments)
    return gen.messages(max_messages=max_messages, duration_ms=duration_ms)
