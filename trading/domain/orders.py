"""The entry request the state machine emits and risk and execution consume."""

from __future__ import annotations

from dataclasses import dataclass

from failover.domain.enums import OrderSide


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """Open a position: the only thing that starts an entry (spec: ORDER_REQUEST)."""

    symbol: str
    side: OrderSide
    reference_price: float  # the price the signal saw; execution rounds it to the tick
    stop_distance: float  # in price units, > 0; sizing risks this much per unit
    reason: str  # why the machine fired, e.g. ENTRY_SIGNAL_LONG
    score: float
    ts: int  # epoch ms of the event that fired it
