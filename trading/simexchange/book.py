"""An L2 order book kept from Bybit orderbook snapshot and delta messages.

Pure Python (no Django, no aiohttp): the REPLAY venue reuses it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from itertools import compress
from operator import itemgetter

Level = tuple[Decimal, Decimal]  # (price, size)

SWEEP_EVERY = 16  # deltas between two sweeps of the deleted levels out of the book
_SIZE = itemgetter(1)


def _with_size(levels: Mapping[float, float]) -> dict[float, float]:
    """The levels whose size is not 0 (sizes are never negative: ``parse_levels`` refuses them)."""
    return dict(filter(_SIZE, levels.items()))


def _dec(x: float) -> Decimal:
    """The decimal a stored float came from: ``repr`` gives it back for up to 15 significant digits."""
    return Decimal(repr(x))


class OrderBook:
    """Bids and asks by price, with Bybit's update id ``u`` and sequence ``seq``.

    Levels arrive parsed and validated (``parse_levels``), are stored as floats
    and handed out as Decimals. Every update applies here (REPLAY: every
    orderbook message), while reads are rare unless orders rest, and a float is
    3x cheaper to parse than a Decimal. It is exact for
    exchange prices and sizes: a decimal of up to 15 significant digits survives
    the round trip through a float (``_dec``), and equal or ordered decimals stay
    equal or ordered as floats, so matching compares floats safely.

    A delta is set in one C call per side: a deleted level stays as a size-0 entry
    that every read skips, and the entries are swept out every ``SWEEP_EVERY``
    deltas, so the book never holds more than that many deltas' deletes.
    """

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self._bids: dict[float, float] = {}
        self._asks: dict[float, float] = {}
        self.u = 0
        self.seq = 0
        self.ts = 0
        self._sorted_bids: list[float] | None = None  # prices of levels with a size, best first
        self._sorted_asks: list[float] | None = None
        self._unswept = 0  # deltas applied since the last sweep

    # -- updates ---------------------------------------------------------
    def apply_snapshot(self, bids: Mapping[float, float], asks: Mapping[float, float], u: int, seq: int) -> None:
        """Replace the whole book with parsed levels (``parse_levels``: price to size)."""
        self._bids = _with_size(bids)
        self._asks = _with_size(asks)
        self._unswept = 0
        self.u, self.seq = u, seq
        self._touch()

    def apply_delta(self, bids: Mapping[float, float], asks: Mapping[float, float], u: int, seq: int) -> None:
        """Apply parsed levels: size 0 deletes a level (an absent one is ignored), any other size sets it."""
        self._bids.update(bids)
        self._asks.update(asks)
        self._unswept += 1
        if self._unswept >= SWEEP_EVERY:
            self._bids = _with_size(self._bids)
            self._asks = _with_size(self._asks)
            self._unswept = 0
        self.u, self.seq = u, seq
        self._touch()

    def _touch(self) -> None:
        self._sorted_bids = None
        self._sorted_asks = None

    # -- reads -----------------------------------------------------------
    def _bid_keys(self) -> list[float]:
        if self._sorted_bids is None:
            book = self._bids
            self._sorted_bids = sorted(compress(book, book.values()), reverse=True)  # a size of 0 is a delete
        return self._sorted_bids

    def _ask_keys(self) -> list[float]:
        if self._sorted_asks is None:
            book = self._asks
            self._sorted_asks = sorted(compress(book, book.values()))
        return self._sorted_asks

    def best_bid(self) -> Level | None:
        prices = self._bid_keys()
        return (_dec(prices[0]), _dec(self._bids[prices[0]])) if prices else None

    def best_ask(self) -> Level | None:
        prices = self._ask_keys()
        return (_dec(prices[0]), _dec(self._asks[prices[0]])) if prices else None

    def mid(self) -> Decimal | None:
        bid, ask = self.best_bid(), self.best_ask()
        if bid and ask:
            return (bid[0] + ask[0]) / 2
        return None

    def levels(self, side: str, depth: int | None = None) -> list[Level]:
        """Levels of one book side ("Buy" = bids, "Sell" = asks), best first."""
        if side == "Buy":
            prices, book = self._bid_keys(), self._bids
        else:
            prices, book = self._ask_keys(), self._asks
        if depth is not None:
            prices = prices[:depth]
        return [(_dec(p), _dec(book[p])) for p in prices]

    def liquidity_for(self, taker_side: str, limit: Decimal | None = None) -> list[Level]:
        """Levels a taker on ``taker_side`` can hit, best first, up to ``limit`` price."""
        if limit is None:
            return self.levels("Sell" if taker_side == "Buy" else "Buy")
        # A buyer walks the asks up to the limit, a seller the bids down to it: with the sign, both go "up".
        if taker_side == "Buy":
            prices, book, sign = self._ask_keys(), self._asks, 1.0
        else:
            prices, book, sign = self._bid_keys(), self._bids, -1.0
        bound = sign * float(limit)
        out: list[Level] = []
        for p in prices:
            if sign * p > bound:
                break
            out.append((_dec(p), _dec(book[p])))
        return out


def walk(levels: Sequence[Level], qty: Decimal) -> list[Level]:
    """Split ``qty`` over ``levels`` best first; return the (price, qty) fills."""
    fills: list[Level] = []
    left = qty
    for price, size in levels:
        if left <= 0:
            break
        take = min(size, left)
        fills.append((price, take))
        left -= take
    return fills
