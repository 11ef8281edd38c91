"""Instrument filters of the linear perpetuals the product knows out of the box.

The simulator serves these through ``/v5/market/instruments-info`` and the market
generator starts its prices from them. Against Bybit the adapter reads the real
filters from the exchange instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class InstrumentSpec:
    symbol: str
    base_coin: str
    tick_size: Decimal
    qty_step: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_notional: Decimal
    max_leverage: Decimal
    start_price: Decimal  # where a generated market begins


def _spec(symbol: str, tick: str, step: str, min_qty: str, max_qty: str, lev: str, start: str) -> InstrumentSpec:
    return InstrumentSpec(
        symbol=symbol,
        base_coin=symbol.removesuffix("USDT"),
        tick_size=Decimal(tick),
        qty_step=Decimal(step),
        min_qty=Decimal(min_qty),
        max_qty=Decimal(max_qty),
        min_notional=Decimal("5"),
        max_leverage=Decimal(lev),
        start_price=Decimal(start),
    )


DEFAULT_INSTRUMENTS: dict[str, InstrumentSpec] = {
    spec.symbol: spec
    for spec in (
        _spec("BTCUSDT", "0.10", "0.001", "0.001", "1190", "100", "91234.5"),
        _spec("ETHUSDT", "0.01", "0.01", "0.01", "7240", "100", "3050.25"),
        _spec("SOLUSDT", "0.010", "0.1", "0.1", "79770", "75", "142.35"),
        _spec("XRPUSDT", "0.0001", "1", "1", "2000000", "75", "2.1834"),
        _spec("DOGEUSDT", "0.00001", "1", "1", "9000000", "75", "0.15872"),
        _spec("ADAUSDT", "0.0001", "1", "1", "3000000", "75", "0.6421"),
        _spec("LINKUSDT", "0.001", "0.1", "0.1", "100000", "75", "14.862"),
        _spec("AVAXUSDT", "0.001", "0.1", "0.1", "60000", "50", "21.538"),
        _spec("LTCUSDT", "0.01", "0.1", "0.1", "35000", "75", "88.42"),
        _spec("AI16ZUSDT", "0.0001", "1", "1", "2000000", "25", "0.2463"),
    )
}
