"""Build Bybit V5 public WebSocket messages exactly as Bybit sends them.

Prices and sizes travel as strings at the instrument's tick size and qty step.
The generator keeps them as integer counts of ticks and steps, so formatting is
integer arithmetic with precomputed decimal places, never ``Decimal`` in the hot
path. Key order follows Bybit's own messages so recordings and generated data
look alike line by line.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

ORDERBOOK = "orderbook"
PUBLIC_TRADE = "publicTrade"
TICKERS = "tickers"
KLINE = "kline"

BUY = "Buy"
SELL = "Sell"
PLUS_TICK = "PlusTick"
ZERO_PLUS_TICK = "ZeroPlusTick"
MINUS_TICK = "MinusTick"
ZERO_MINUS_TICK = "ZeroMinusTick"

Levels = list[list[str]]


def decimals_of(step: Decimal) -> int:
    """Return how many decimal places Bybit prints for a tick size or qty step."""
    exponent = step.as_tuple().exponent
    if not isinstance(exponent, int):
        raise ValueError(f"not a finite step: {step}")
    return max(0, -exponent)


def unit_formatter(step: Decimal, cache_size: int = 4_096) -> Callable[[int], str]:
    """Return a function that prints ``n`` steps of ``step`` as Bybit does ("0.10" -> 2 places).

    Results are cached because prices and sizes near the touch recur constantly.
    """
    places = decimals_of(step)
    units = int(step.scaleb(places))  # the step counted in 10**-places
    pattern, scale = f"%d.%0{places}d", 10**places
    cache: dict[int, str] = {}

    def fmt(n: int) -> str:
        text = cache.get(n)
        if text is None:
            if len(cache) >= cache_size:
                cache.clear()
            if places:
                sign, v = ("-", -n * units) if n < 0 else ("", n * units)
                text = sign + pattern % divmod(v, scale)
            else:
                text = str(n * units)
            cache[n] = text
        return text

    return fmt


def split_topic(topic: str) -> tuple[str, str] | None:
    """Return (kind, symbol) of a public topic, or None when the topic is not one we know."""
    kind, _, rest = topic.partition(".")
    if kind in (PUBLIC_TRADE, TICKERS):
        return (kind, rest) if rest and "." not in rest else None
    if kind in (ORDERBOOK, KLINE):
        param, _, symbol = rest.partition(".")
        return (kind, symbol) if param and symbol and "." not in symbol else None
    return None


def orderbook_topic(symbol: str, depth: int = 50) -> str:
    """Return the orderbook topic of a symbol."""
    return f"orderbook.{depth}.{symbol}"


def trade_topic(symbol: str) -> str:
    """Return the public trade topic of a symbol."""
    return f"publicTrade.{symbol}"


def ticker_topic(symbol: str) -> str:
    """Return the tickers topic of a symbol."""
    return f"tickers.{symbol}"


def kline_topic(symbol: str, interval: str = "1") -> str:
    """Return the kline topic of a symbol."""
    return f"kline.{interval}.{symbol}"


def orderbook_message(
    topic: str,
    kind: str,
    ts_ms: int,
    symbol: str,
    bids: Levels,
    asks: Levels,
    update_id: int,
    seq: int,
    cts_ms: int,
) -> dict[str, Any]:
    """Build an orderbook snapshot or delta; a delta level of size "0" deletes it."""
    return {
        "topic": topic,
        "type": kind,
        "ts": ts_ms,
        "data": {"s": symbol, "b": bids, "a": asks, "u": update_id, "seq": seq},
        "cts": cts_ms,
    }


def trade_entry(
    ts_ms: int,
    symbol: str,
    side: str,
    size: str,
    price: str,
    tick_direction: str,
    trade_id: str,
    seq: int,
    block_trade: bool = False,
) -> dict[str, Any]:
    """Build one fill of a publicTrade message; ``side`` is the taker's side."""
    return {
        "T": ts_ms,
        "s": symbol,
        "S": side,
        "v": size,
        "p": price,
        "L": tick_direction,
        "i": trade_id,
        "BT": block_trade,
        "seq": seq,
    }


def trade_message(topic: str, ts_ms: int, trades: list[dict[str, Any]]) -> dict[str, Any]:
    """Build a publicTrade message; Bybit always labels these "snapshot"."""
    return {"topic": topic, "type": "snapshot", "ts": ts_ms, "data": trades}


def ticker_message(topic: str, kind: str, ts_ms: int, cross_seq: int, data: dict[str, str]) -> dict[str, Any]:
    """Build a tickers snapshot or delta; ``data`` starts with "symbol" and holds strings only."""
    return {"topic": topic, "type": kind, "data": data, "cs": cross_seq, "ts": ts_ms}


def kline_message(topic: str, ts_ms: int, klines: list[dict[str, Any]]) -> dict[str, Any]:
    """Build a kline message."""
    return {"topic": topic, "data": klines, "ts": ts_ms, "type": "snapshot"}


def kline_entry(
    start_ms: int,
    interval_ms: int,
    interval: str,
    prices: tuple[str, str, str, str],
    volume: str,
    turnover: str,
    confirm: bool,
    ts_ms: int,
) -> dict[str, Any]:
    """Build one candle; ``prices`` are open, close, high, low."""
    open_, close, high, low = prices
    return {
        "start": start_ms,
        "end": start_ms + interval_ms - 1,
        "interval": interval,
        "open": open_,
        "close": close,
        "high": high,
        "low": low,
        "volume": volume,
        "turnover": turnover,
        "confirm": confirm,
        "timestamp": ts_ms,
    }


def format_trade_id(bits: int) -> str:
    """Print 128 bits as a UUID-shaped trade id, as Bybit's "i" field looks."""
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
