"""Execution quality per symbol: slippage in bps, a score in [0, 100], entry blocks.

Slippage is signed so that adverse is positive: a buy filled above the expected
price, or a sell filled below it. The score only counts adverse slippage
(price improvement on one fill must not hide a bad fill on the next):

    score = clamp(100 * (1 - mean(max(0, slippage_bps)) / max_slippage_bps), 0, 100)

over the last ``slippage_window`` fills no older than ``slippage_window_s``.
The age bound is what lets a blocked symbol recover: with entries blocked few
new fills arrive, so old spikes have to age out.

A symbol is blocked when its score falls below ``quality_threshold`` and
unblocked only when it climbs back to ``recovery_threshold`` or more
(hysteresis). Blocks are per symbol, never global. Each change of a symbol's
block is handed to ``on_change`` (the trader raises SLIPPAGE_BLOCK / _UNBLOCK).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from failover.domain.clock import Clock
from failover.domain.enums import OrderSide
from trading.domain.config import QualityConfig

BPS = 10_000.0


def slippage_bps(side: OrderSide, expected_price: float, fill_price: float) -> float:
    """Return the slippage of a fill in bps of the expected price, adverse positive."""
    if expected_price <= 0.0:
        raise ValueError("expected_price must be positive")
    return side.sign * (fill_price - expected_price) / expected_price * BPS


@dataclass(frozen=True, slots=True)
class QualityBlockChange:
    """A symbol was blocked (its score fell below ``threshold``) or unblocked (it climbed back to it)."""

    symbol: str
    blocked: bool
    score: float
    threshold: float  # quality_threshold for a block, recovery_threshold for an unblock


BlockListener = Callable[[QualityBlockChange], None]


class SlippageTracker:
    """Keep one symbol's recent fills and their adverse slippage."""

    __slots__ = ("_samples", "_max_age_ms", "_sum")

    def __init__(self, window: int, max_age_ms: int) -> None:
        self._samples: deque[tuple[int, float]] = deque(maxlen=window)
        self._max_age_ms = max_age_ms
        self._sum = 0.0

    def add(self, ts_ms: int, slip_bps: float) -> None:
        """Record a fill's slippage."""
        self._samples.append((ts_ms, slip_bps if slip_bps > 0.0 else 0.0))
        self._resum()

    def prune(self, now_ms: int) -> None:
        """Drop fills older than the age bound."""
        samples = self._samples
        if samples and now_ms - samples[0][0] > self._max_age_ms:
            cutoff = now_ms - self._max_age_ms
            while samples and samples[0][0] < cutoff:
                samples.popleft()
            self._resum()

    def mean_adverse_bps(self) -> float:
        """Return the mean adverse slippage of the kept fills (0 when none)."""
        n = len(self._samples)
        return self._sum / n if n else 0.0

    def _resum(self) -> None:
        # Re-add instead of a running difference: fills are rare and this keeps the mean exact.
        self._sum = sum(s for _, s in self._samples)


class ExecutionQuality:
    """Score every symbol's execution and decide which symbols may not open positions."""

    def __init__(self, config: QualityConfig, clock: Clock, on_change: BlockListener | None = None) -> None:
        self._clock = clock
        self._on_change = on_change
        self._trackers: dict[str, SlippageTracker] = {}
        self._blocked: set[str] = set()
        self.apply_config(config)

    def apply_config(self, config: QualityConfig) -> None:
        """Take new thresholds; a changed window starts the trackers afresh (and so lifts every block)."""
        window = config.slippage_window
        max_age_ms = int(config.slippage_window_s * 1000)
        if getattr(self, "_window", None) != (window, max_age_ms):
            self._trackers = {}
            for symbol in sorted(self._blocked):  # no fills left to judge by: the score is 100 again
                self._change(symbol, blocked=False, score=100.0, threshold=config.recovery_threshold)
        self._window = (window, max_age_ms)
        self._max_bps = config.max_slippage_bps
        self._threshold = config.quality_threshold
        self._recovery = config.recovery_threshold

    def record_fill(self, symbol: str, side: OrderSide, expected_price: float, fill_price: float) -> float:
        """Record a fill against the price the order expected; return its slippage in bps."""
        slip = slippage_bps(side, expected_price, fill_price)
        tracker = self._trackers.get(symbol)
        if tracker is None:
            tracker = self._trackers[symbol] = SlippageTracker(*self._window)
        now = self._clock.now_ms()
        tracker.prune(now)
        tracker.add(now, slip)
        self._judge(symbol, tracker)
        return slip

    def score(self, symbol: str) -> float:
        """Return the symbol's quality score in [0, 100] (100 with no recent fills)."""
        tracker = self._trackers.get(symbol)
        if tracker is None:
            return 100.0
        tracker.prune(self._clock.now_ms())
        return self._score(tracker)

    def block_new_entries(self, symbol: str) -> bool:
        """Tell whether ``symbol`` may not open new positions because of poor execution."""
        tracker = self._trackers.get(symbol)
        if tracker is None:
            return False
        tracker.prune(self._clock.now_ms())
        return self._judge(symbol, tracker)

    def _score(self, tracker: SlippageTracker) -> float:
        score = 100.0 * (1.0 - tracker.mean_adverse_bps() / self._max_bps)
        return 0.0 if score < 0.0 else score

    def _judge(self, symbol: str, tracker: SlippageTracker) -> bool:
        score = self._score(tracker)
        if symbol in self._blocked:
            if score >= self._recovery:
                self._change(symbol, blocked=False, score=score, threshold=self._recovery)
                return False
            return True
        if score < self._threshold:
            self._change(symbol, blocked=True, score=score, threshold=self._threshold)
            return True
        return False

    def _change(self, symbol: str, *, blocked: bool, score: float, threshold: float) -> None:
        if blocked:
            self._blocked.add(symbol)
        else:
            self._blocked.discard(symbol)
        if self._on_change is not None:
            self._on_change(QualityBlockChange(symbol=symbol, blocked=blocked, score=score, threshold=threshold))
