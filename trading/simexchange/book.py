"""An L2 order book kept from Bybit orderbook snapshot and delta messages.

Pure Python (no Django, no aiohttp): the REPLAY venue reuses it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

Level = tuple[Decimal, Decimal]  # (price, size)


class OrderBook:
    """Bids and asks by price, with Bybit's update id ``u`` and sequence ``seq``."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self.u = 0
        self.seq = 0
        self.ts = 0
        self._sorted_bids: list[Decimal] | None = None
        self._sorted_asks: list[Decimal] | None = None

    # -- updates ---------------------------------------------------------
    def apply_snapshot(self, bids: Iterable[Sequence[str]], asks: Iterable[Sequence[str]], u: int, seq: int) -> None:
        """Replace the whole book."""
        self.bids = {Decimal(p): Decimal(s) for p, s in bids if Decimal(s) > 0}
        self.asks = {Decimal(p): Decimal(s) for p, s in asks if Decimal(s) > 0}
        self.u, self.seq = u, seq
        self._touch()

    def apply_delta(
        self, bids: Iterable[Sequence[str]], asks: Iterable[Sequence[str]], u: int, seq: int
    ) -> tuple[list[list[str]], list[list[str]]]:
        """Apply a delta; return the entries that really changed the book.

        Deletes of absent levels are dropped from the returned entries, because
        pybit raises StopIteration on them (issue #369) and kills its stream.
        """
        kept_b = self._apply_side(self.bids, bids)
        kept_a = self._apply_side(self.asks, asks)
        self.u, self.seq = u, seq
        self._touch()
        return kept_b, kept_a

    @staticmethod
    def _apply_side(side: dict[Decimal, Decimal], entries: Iterable[Sequence[str]]) -> list[list[str]]:
        kept: list[list[str]] = []
        for p, s in entries:
            price, size = Decimal(p), Decimal(s)
            if size == 0:
                if side.pop(price, None) is None:
                    continue
            else:
                side[price] = size
            kept.append([p, s])
        return kept

    def set_level(self, side: str, price: Decimal, size: Decimal) -> None:
        """Set one level directly (size 0 deletes); used by tests and generators of depth."""
        book = self.bids if side == "Buy" else self.asks
        if size <= 0:
            book.pop(price, None)
        else:
            book[price] = size
        self._touch()

    def _touch(self) -> None:
        self._sorted_bids = None
        self._sorted_asks = None

    # -- reads -----------------------------------------------------------
    def bid_prices(self) -> list[Decimal]:
        """Bid prices, best (highest) first."""
        if self._sorted_bids is None:
            self._sorted_bids = sorted(self.bids, reverse=True)
        return self._sorted_bids

    def ask_prices(self) -> list[Decimal]:
        """Ask prices, best (lowest) first."""
        if self._sorted_asks is None:
            self._sorted_asks = sorted(self.asks)
        return self._sorted_asks

    def best_bid(self) -> Level | None:
        prices = self.bid_prices()
        return (prices[0], self.bids[prices[0]]) if prices else None

    def best_ask(self) -> Level | None:
        prices = self.ask_prices()
        return (prices[0], self.asks[prices[0]]) if prices else None

    def mid(self) -> Decimal | None:
        bid, ask = self.best_bid(), self.best_ask()
        if bid and ask:
            return (bid[0] + ask[0]) / 2
        return None

    def levels(self, side: str, depth: int | None = None) -> list[Level]:
        """Levels of one book side ("Buy" = bids, "Sell" = asks), best first."""
        if side == "Buy":
            prices, book = self.bid_prices(), self.bids
        else:
            prices, book = self.ask_prices(), self.asks
        if depth is not None:
            prices = prices[:depth]
        return [(p, book[p]) for p in prices]

    def liquidity_for(self, taker_side: str, limit: Decimal | None = None) -> list[Level]:
        """Levels a taker on ``taker_side`` can hit, best first, up to ``limit`` price."""
        levels = self.levels("Sell" if taker_side == "Buy" else "Buy")
        if limit is None:
            return levels
        if taker_side == "Buy":
            return [lv for lv in levels if lv[0] <= limit]
        return [lv for lv in levels if lv[0] >= limit]

    def is_empty(self) -> bool:
        return not self.bids and not self.asks


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
