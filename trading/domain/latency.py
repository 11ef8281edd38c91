"""Latency per channel: rolling average and p99 over a bounded window.

Channels are free-form names; the trader uses ``rest`` (round trip of a REST
call), ``ws_public`` and ``ws_private`` (lag = local receive time - the
exchange's timestamp). A negative WS lag means the local clock is behind the
exchange's; it is recorded as is so clock skew shows up instead of hiding.

Recording is O(1) into a preallocated ring; the statistics are computed when
asked, which happens once per health/detector tick rather than per message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from trading.domain.config import LatencyConfig

OK = "OK"
WARN = "WARN"
ERROR = "ERROR"


class _Ring:
    __slots__ = ("values", "size", "next", "count", "total", "last")

    def __init__(self, size: int) -> None:
        self.values = [0.0] * size
        self.size = size
        self.next = 0
        self.count = 0  # samples currently in the ring
        self.total = 0  # samples ever recorded
        self.last = 0.0

    def add(self, value: float) -> None:
        self.values[self.next] = value
        self.next = (self.next + 1) % self.size
        if self.count < self.size:
            self.count += 1
        self.total += 1
        self.last = value

    def samples(self) -> list[float]:
        return self.values[: self.count] if self.count < self.size else list(self.values)


@dataclass(frozen=True, slots=True)
class ChannelLatency:
    channel: str
    samples: int  # in the window
    total: int  # ever recorded
    avg_ms: float
    p99_ms: float
    max_ms: float
    last_ms: float
    status: str  # OK | WARN | ERROR, judged on the average

    def to_dict(self) -> dict[str, object]:
        """Return camelCase data for the API and health."""
        return {
            "channel": self.channel,
            "samples": self.samples,
            "total": self.total,
            "avgMs": self.avg_ms,
            "p99Ms": self.p99_ms,
            "maxMs": self.max_ms,
            "lastMs": self.last_ms,
            "status": self.status,
        }


def percentile(sorted_values: list[float], pct: float) -> float:
    """Return the nearest-rank percentile of already sorted values (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(pct / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


class LatencyMonitor:
    """Keep a bounded window of latency samples per channel."""

    def __init__(self, config: LatencyConfig) -> None:
        self._rings: dict[str, _Ring] = {}
        self.apply_config(config)

    def apply_config(self, config: LatencyConfig) -> None:
        """Take new thresholds; a new window size starts the windows afresh."""
        if getattr(self, "_window", None) != config.window:
            self._rings = {}
        self._window = config.window
        self._warn_ms = config.warn_ms
        self._error_ms = config.error_ms

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

    def channel(self, channel: str) -> ChannelLatency:
        """Return the statistics of one channel."""
        ring = self._rings.get(channel)
        if ring is None or ring.count == 0:
            return ChannelLatency(channel, 0, 0 if ring is None else ring.total, 0.0, 0.0, 0.0, 0.0, OK)
        values = sorted(ring.samples())
        avg = math.fsum(values) / len(values)
        return ChannelLatency(
            channel=channel,
            samples=len(values),
            total=ring.total,
            avg_ms=avg,
            p99_ms=percentile(values, 99.0),
            max_ms=values[-1],
            last_ms=ring.last,
            status=self._status(avg),
        )

    def snapshot(self) -> dict[str, ChannelLatency]:
        """Return the statistics of every channel."""
        return {name: self.channel(name) for name in sorted(self._rings)}

    def _status(self, avg_ms: float) -> str:
        if avg_ms >= self._error_ms:
            return ERROR
        if avg_ms >= self._warn_ms:
            return WARN
        return OK
