"""Latency per channel: a rolling average over a bounded window.

Channels are free-form names; the trader uses ``rest`` (round trip of a REST
call), ``ws_public`` and ``ws_private`` (lag = local receive time - the
exchange's timestamp). A negative WS lag means the local clock is behind the
exchange's; it is recorded as is so clock skew shows up instead of hiding.

Recording is O(1) into a preallocated ring; the average is computed when
asked, which happens once per health/detector tick rather than per message.
"""

from __future__ import annotations

import math

from trading.domain.config import LatencyConfig


class _Ring:
    __slots__ = ("values", "size", "next", "count")

    def __init__(self, size: int) -> None:
        self.values = [0.0] * size
        self.size = size
        self.next = 0
        self.count = 0  # samples currently in the ring

    def add(self, value: float) -> None:
        self.values[self.next] = value
        self.next = (self.next + 1) % self.size
        if self.count < self.size:
            self.count += 1

    def samples(self) -> list[float]:
        return self.values[: self.count] if self.count < self.size else list(self.values)


class LatencyMonitor:
    """Keep a bounded window of latency samples per channel."""

    def __init__(self, config: LatencyConfig) -> None:
        self._rings: dict[str, _Ring] = {}
        self.apply_config(config)

    def apply_config(self, config: LatencyConfig) -> None:
        """Take a new window size; a changed one starts the windows afresh."""
        if getattr(self, "_window", None) != config.window:
            self._rings = {}
        self._window = config.window

    def record(self, channel: str, latency_ms: float) -> None:
        """Record one sample (e.g. a REST round trip) on ``channel``."""
        ring = self._rings.get(channel)
        if ring is None:
            ring = self._rings[channel] = _Ring(self._window)
        ring.add(latency_ms)

    def record_ws(self, channel: str, received_ms: float, exchange_ts_ms: float) -> float:
        """Record a WS message's lag (local receive time - exchange timestamp) and return it."""
        lag = received_ms - exchange_ts_ms
        self.record(channel, lag)
        return lag

    def average(self, channel: str) -> float:
        """Return the window's mean latency of ``channel`` (0 when empty)."""
        ring = self._rings.get(channel)
        if ring is None or ring.count == 0:
            return 0.0
        return math.fsum(ring.samples()) / ring.count
