"""Builders for tests of the execution engine and the trading core on the in-process venue."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from failover.domain.clock import ManualClock
from failover.domain.enums import OrderSide
from trading.domain.config import DEFAULT_CONFIG, TradingConfig
from trading.domain.ids import OrderLinkIdFactory
from trading.domain.orders import OrderRequest
from trading.engine.core import TradingCore
from trading.engine.eventlog import EventLog
from trading.engine.localstate import NoPersistence, Persistence
from trading.exchange.venue import InProcessVenue
from trading.marketdata.generator import generate_messages
from trading.marketdata.instruments import DEFAULT_INSTRUMENTS

T0 = 1_763_479_200_000


@dataclass
class Rig:
    core: TradingCore
    venue: Any
    clock: ManualClock
    persistence: Any
    crashes: list[dict] = field(default_factory=list)
    safe: list[bool] = field(default_factory=lambda: [False])

    def pump(self) -> None:
        """Deliver what the venue pushed on the private stream."""
        for message in self.venue.drain():
            self.core.on_private(message)

    def market(self, messages: list[dict]) -> None:
        """Play market messages into the venue only (the pipeline's signals stay out of the way)."""
        for message in messages:
            self.clock.set(max(self.clock.now_ms(), int(message["ts"])))
            self.venue.on_public(message)
            self.pump()

    def mid(self, symbol: str) -> float:
        book = self.venue.engine.books[symbol]
        return float((book.best_bid()[0] + book.best_ask()[0]) / 2)

    def request(self, symbol: str, side: OrderSide = OrderSide.BUY, stop_bps: float = 50.0) -> OrderRequest:
        mid = self.mid(symbol)
        return OrderRequest(
            symbol=symbol,
            side=side,
            reference_price=mid,
            stop_distance=mid * stop_bps / 10_000,
            reason="TEST",
            score=0.9,
            ts=self.clock.now_ms(),
        )

    def enter(self, symbol: str, side: OrderSide = OrderSide.BUY):
        result = self.core.execution.submit_entry(self.request(symbol, side))
        self.pump()
        return result


def warm_market(symbols: list[str], messages: int = 400, seed: int = 7) -> list[dict]:
    return list(generate_messages(symbols, seed, T0, max_messages=messages))


def build_rig(
    symbols: list[str],
    event_dir: Path,
    *,
    venue: Any = None,
    persistence: Persistence | None = None,
    config: TradingConfig = DEFAULT_CONFIG,
) -> Rig:
    clock = ManualClock(T0)
    instruments = {s: DEFAULT_INSTRUMENTS[s] for s in symbols}
    venue = venue or InProcessVenue(instruments, clock_ms=clock.now_ms)
    persistence = persistence or NoPersistence()
    events = EventLog(event_dir, clock_ms=clock.now_ms)
    rig_holder: dict[str, Rig] = {}
    core = TradingCore(
        config=config,
        clock=clock,
        instruments=instruments,
        exchange=venue,
        persistence=persistence,
        events=events,
        safe_mode=lambda: rig_holder["rig"].safe[0],
        on_crash=lambda module, exc, details: rig_holder["rig"].crashes.append(details),
        ids=OrderLinkIdFactory(clock, instance="test"),
    )
    rig = Rig(core=core, venue=venue, clock=clock, persistence=persistence)
    rig_holder["rig"] = rig
    core.ledger.set_equity(Decimal("10000"))
    rig.market(warm_market(symbols))
    return rig
