"""Helpers shared by the market data tests: an independent reference book and a few builders."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

CAPTURES = Path(__file__).parent / "captures"
START_MS = 1_767_225_600_000


def load_capture(name: str) -> dict[str, Any]:
    """Return one reference payload from the captures folder."""
    return json.loads((CAPTURES / name).read_text(encoding="utf-8"))


def dumps(message: dict[str, Any]) -> str:
    """Serialise a message the way the data files do."""
    return json.dumps(message, separators=(",", ":"))


class ReferenceBook:
    """A deliberately simple book keyed by exact Decimal prices, checking Bybit's delta rules as it goes."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        data = snapshot["data"]
        prices_b = [Decimal(p) for p, _ in data["b"]]
        prices_a = [Decimal(p) for p, _ in data["a"]]
        assert prices_b == sorted(prices_b, reverse=True), "snapshot bids must be descending"
        assert prices_a == sorted(prices_a), "snapshot asks must be ascending"
        self.bids = {Decimal(p): Decimal(q) for p, q in data["b"]}
        self.asks = {Decimal(p): Decimal(q) for p, q in data["a"]}
        self.u: int = data["u"]
        self.seq: int = data["seq"]

    def apply(self, delta: dict[str, Any]) -> None:
        """Apply a delta, asserting u, seq, deletes of shown levels only and an uncrossed result."""
        data = delta["data"]
        assert data["u"] == self.u + 1, f"u jumped from {self.u} to {data['u']}"
        assert data["seq"] > self.seq, "seq must increase"
        self.u, self.seq = data["u"], data["seq"]
        for side, levels in ((self.bids, data["b"]), (self.asks, data["a"])):
            seen = set()
            for p, q in levels:
                price = Decimal(p)
                assert price not in seen, f"price {p} twice in one delta"
                seen.add(price)
                if q == "0":
                    assert price in side, f"delete of absent level {p}"
                    del side[price]
                else:
                    assert Decimal(q) > 0
                    side[price] = Decimal(q)
        assert self.bids and self.asks, "a side emptied"
        assert max(self.bids) < min(self.asks), f"crossed: {max(self.bids)} >= {min(self.asks)}"

    @property
    def best_bid(self) -> Decimal:
        return max(self.bids)

    @property
    def best_ask(self) -> Decimal:
        return min(self.asks)


def book_snapshot(symbol: str, bids: list[list[str]], asks: list[list[str]], u: int = 100, ts: int = 1000) -> dict:
    """Build a hand-written orderbook snapshot."""
    return {
        "topic": f"orderbook.50.{symbol}",
        "type": "snapshot",
        "ts": ts,
        "data": {"s": symbol, "b": bids, "a": asks, "u": u, "seq": 5000},
        "cts": ts - 2,
    }


def book_delta(symbol: str, bids: list[list[str]], asks: list[list[str]], u: int = 101, ts: int = 1100) -> dict:
    """Build a hand-written orderbook delta."""
    message = book_snapshot(symbol, bids, asks, u, ts)
    message["type"] = "delta"
    return message
