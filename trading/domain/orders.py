"""The entry request the state machine emits and risk and execution consume."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        """Return +1 for BUY, -1 for SELL."""
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        """Return the side that closes a position opened on this side."""
        return Side.SELL if self is Side.BUY else Side.BUY


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """Open a position: the only thing that starts an entry (spec: ORDER_REQUEST)."""

    symbol: str
    side: Side
    reference_price: float  # the price the signal saw; execution rounds it to the tick
    stop_distance: float  # in price units, > 0; sizing risks this much per unit
    reason: str  # why the machine fired, e.g. ENTRY_SIGNAL_LONG
    score: float
    ts: int  # epoch ms of the event that fired it
