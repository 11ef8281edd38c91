"""The one normalised market event every pipeline stage consumes.

Bybit public messages (tickers, publicTrade, orderbook) become ``MarketEvent``
values; prices here are floats because features are statistics. Prices and
quantities that go back to the exchange are rounded to the instrument's filters
as ``Decimal`` at the execution edge.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple, cast

TRADE = "trade"
BOOK = "book"
TICKER = "ticker"


class MarketEvent(NamedTuple):
    """Immutable and hashable; a named tuple because one is made per event on REPLAY's hot path, and a tuple
    is built in C (a frozen dataclass sets each of its ten fields through ``object.__setattr__``: 2-3x slower)."""

    kind: str  # TRADE | BOOK | TICKER
    symbol: str
    ts_ms: int  # the exchange's timestamp of the event
    price: float  # trade price, or mid of the book, or last price of the ticker
    qty: float = 0.0  # traded quantity (trades only)
    side: int = 0  # taker side of a trade: +1 buy, -1 sell; 0 otherwise
    bid: float = 0.0  # best bid and ask with sizes, when the event carries them
    ask: float = 0.0
    bid_qty: float = 0.0
    ask_qty: float = 0.0


# All ten fields in order, built in one C call: the named tuple's own ``__new__`` is a Python function, and
# REPLAY makes one event per market message. Only for callers that pass every field, positionally.
event_of_fields = cast(Callable[[tuple[str, str, int, float, float, int, float, float, float, float]], MarketEvent],
                       partial(tuple.__new__, MarketEvent))  # fmt: skip
