"""Detectors that turn observations into failure events: pure, clock-injected, no I/O.

Every detector is edge-triggered both ways. An observation method (or
``check()``, for conditions that start with the passage of time) returns a
``FailureEvent`` exactly once, when the condition starts, and None otherwise;
``is_active`` says whether it holds now, and ``cleared()`` returns True exactly
once after it has ended, which is the "condition cleared" half of
``safe_mode_exit_allowed``. Thresholds are required constructor arguments so the
caller maps every one from config and none hides here as a default.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from datetime import datetime
from typing import Any, ClassVar

from failover.domain.clock import Clock
from failover.domain.reconcile import OrderDiff, PositionDiff, is_in_sync
from failover.domain.types import FailureEvent, FailureSource, FailureType


class Detector:
    """The edge-triggering every detector shares."""

    failure_type: ClassVar[FailureType]

    def __init__(self, *, clock: Clock, source: str) -> None:
        self._clock = clock
        self._source = str(source)
        self._active_since: datetime | None = None
        self._cleared_unseen = False

    @property
    def is_active(self) -> bool:
        return self._active_since is not None

    def cleared(self) -> bool:
        """Return True once after the condition has ended, then False until it starts and ends again."""
        seen, self._cleared_unseen = self._cleared_unseen, False
        return seen

    def _settle(self, holds: bool, now: datetime, message: str, details: dict[str, Any]) -> FailureEvent | None:
        if holds and self._active_since is None:
            self._active_since = now
            self._cleared_unseen = False
            return FailureEvent(timestamp=now, type=self.failure_type, source=self._source, message=message,
                                details=details)
        if not holds and self._active_since is not None:
            self._active_since = None
            self._cleared_unseen = True
        return None


def _seconds(since: datetime | None, now: datetime) -> float:
    return 0.0 if since is None else (now - since).total_seconds()


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")


def _not_negative(name: str, value: float) -> None:
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def _prune(times: deque[datetime], now: datetime, window_s: float) -> None:
    while times and (now - times[0]).total_seconds() > window_s:
        times.popleft()


class RestFailureDetector(Detector):
    """EXCHANGE_UNAVAILABLE after ``threshold`` REST failures in a row (5xx, rate limit, timeout); a success resets."""

    failure_type = FailureType.EXCHANGE_UNAVAILABLE

    def __init__(self, *, threshold: int, clock: Clock, source: str = FailureSource.EXECUTION_ENGINE) -> None:
        super().__init__(clock=clock, source=source)
        _positive("threshold", threshold)
        self.threshold = threshold
        self.consecutive_failures = 0

    def record_failure(self, error: str, *, status_code: int | None = None) -> FailureEvent | None:
        """Count one failed request; return the event when the count reaches the threshold."""
        self.consecutive_failures += 1
        return self._settle(
            self.consecutive_failures >= self.threshold, self._clock.now(),
            f"Exchange REST unavailable: {self.consecutive_failures} consecutive failures",
            {"consecutiveFailures": self.consecutive_failures, "lastError": error, "statusCode": status_code},
        )

    def record_success(self) -> None:
        """Reset the count: the exchange answered."""
        self.consecutive_failures = 0
        self._settle(False, self._clock.now(), "", {})


class StreamsDownDetector(Detector):
    """EXCHANGE_UNAVAILABLE when the private and the public stream are both down for ``grace_s``."""

    failure_type = FailureType.EXCHANGE_UNAVAILABLE

    def __init__(self, *, grace_s: float, clock: Clock, source: str = FailureSource.MARKET_DATA_SERVICE) -> None:
        super().__init__(clock=clock, source=source)
        _not_negative("grace_s", grace_s)
        self.grace_s = grace_s
        self._both_down_since: datetime | None = None

    def observe(self, *, private_connected: bool, public_connected: bool) -> FailureEvent | None:
        """Record both streams' state and evaluate."""
        now = self._clock.now()
        if private_connected or public_connected:
            self._both_down_since = None
        elif self._both_down_since is None:
            self._both_down_since = now
        return self.check()

    def check(self) -> FailureEvent | None:
        """Evaluate with the last observed states (both down long enough?)."""
        now = self._clock.now()
        down_s = _seconds(self._both_down_since, now)
        holds = self._both_down_since is not None and down_s >= self.grace_s
        return self._settle(holds, now, "Private and public streams are both down",
                            {"downForS": round(down_s, 3)})


class PrivateStreamDetector(Detector):
    """PRIVATE_WS_DISCONNECTED: disconnected for ``disconnect_grace_s``, connected but silent (no message,
    no pong) for more than ``silence_limit_s``, or the client gave up reconnecting. Pongs count, so the
    limit must exceed the client's ping interval. Until the first connect the stream counts as disconnected
    since construction, so give ``disconnect_grace_s`` at least a connect's time."""

    failure_type = FailureType.PRIVATE_WS_DISCONNECTED

    def __init__(self, *, silence_limit_s: float, disconnect_grace_s: float, clock: Clock,
                 source: str = FailureSource.EXECUTION_ENGINE) -> None:
        super().__init__(clock=clock, source=source)
        _positive("silence_limit_s", silence_limit_s)
        _not_negative("disconnect_grace_s", disconnect_grace_s)
        self.silence_limit_s = silence_limit_s
        self.disconnect_grace_s = disconnect_grace_s
        self._connected = False
        self._gave_up = False
        self._disconnected_since: datetime | None = clock.now()
        self._last_message_at: datetime | None = None
        self.reconnect_attempts = 0

    def on_connected(self) -> FailureEvent | None:
        now = self._clock.now()
        self._connected, self._gave_up = True, False
        self._disconnected_since, self._last_message_at = None, now  # a fresh authenticated connect is a sign of life
        return self.check()

    def on_disconnected(self) -> FailureEvent | None:
        if self._connected:
            self._connected = False
            self._disconnected_since = self._clock.now()
        return self.check()

    def on_reconnect_attempt(self) -> None:
        self.reconnect_attempts += 1

    def expect_connect(self) -> None:
        """The stream is being built anew on purpose (a standby taking the lease): it is disconnected from now,
        with a connect's grace, as at construction; time spent without it while standing by is not an outage."""
        self._connected, self._gave_up = False, False
        self._disconnected_since = self._clock.now()

    def on_message(self) -> FailureEvent | None:
        """Record any message or pong on the stream."""
        self._last_message_at = self._clock.now()
        return self.check()

    def on_gave_up(self) -> FailureEvent | None:
        """Record that the client stopped reconnecting: nothing will bring the stream back by itself."""
        self._connected, self._gave_up = False, True
        if self._disconnected_since is None:
            self._disconnected_since = self._clock.now()
        return self.check()

    def check(self) -> FailureEvent | None:
        now = self._clock.now()
        reason = None
        if self._gave_up:
            reason = "GAVE_UP"
        elif not self._connected and _seconds(self._disconnected_since, now) >= self.disconnect_grace_s:
            reason = "DISCONNECTED"
        elif self._connected and _seconds(self._last_message_at, now) > self.silence_limit_s:
            reason = "SILENT"
        silent_s = _seconds(self._last_message_at, now) if self._last_message_at else None
        return self._settle(reason is not None, now, f"Private WS disconnected ({reason})", {
            "reason": reason,
            "silentForS": None if silent_s is None else round(silent_s, 3),
            "silenceLimitS": self.silence_limit_s,
            "reconnectAttempts": self.reconnect_attempts,
        })


class PublicStreamDetector(Detector):
    """PUBLIC_WS_DEGRADED: more than ``max_reconnects`` within ``reconnect_window_s``, or a watched symbol
    without market data for ``stale_after_s``. The event names the stale symbols (all watched symbols when
    the cause is reconnect flapping). It fires once per episode; ``stale_symbols()`` stays current."""

    failure_type = FailureType.PUBLIC_WS_DEGRADED

    def __init__(self, *, max_reconnects: int, reconnect_window_s: float, stale_after_s: float,
                 symbols: Iterable[str], clock: Clock, source: str = FailureSource.MARKET_DATA_SERVICE) -> None:
        super().__init__(clock=clock, source=source)
        _not_negative("max_reconnects", max_reconnects)
        _positive("reconnect_window_s", reconnect_window_s)
        _positive("stale_after_s", stale_after_s)
        self.max_reconnects = max_reconnects
        self.reconnect_window_s = reconnect_window_s
        self.stale_after_s = stale_after_s
        self._reconnects: deque[datetime] = deque()
        self._last_data: dict[str, datetime] = {}
        self.set_symbols(symbols)

    def set_symbols(self, symbols: Iterable[str]) -> None:
        """Watch ``symbols``; a newly watched symbol gets ``stale_after_s`` from now for its first data."""
        now = self._clock.now()
        self._last_data = {s: self._last_data.get(s, now) for s in dict.fromkeys(symbols)}

    def on_reconnect(self) -> FailureEvent | None:
        self._reconnects.append(self._clock.now())
        return self.check()

    def on_market_data(self, symbol: str) -> FailureEvent | None:
        if symbol in self._last_data:
            self._last_data[symbol] = self._clock.now()
        return self.check()

    def stale_symbols(self) -> list[str]:
        now = self._clock.now()
        return [s for s, at in self._last_data.items() if _seconds(at, now) > self.stale_after_s]

    def check(self) -> FailureEvent | None:
        now = self._clock.now()
        _prune(self._reconnects, now, self.reconnect_window_s)
        stale = self.stale_symbols()
        flapping = len(self._reconnects) > self.max_reconnects
        named = stale or list(self._last_data)
        why = f"no market data for {', '.join(stale)}" if stale else f"{len(self._reconnects)} reconnects"
        return self._settle(bool(stale) or flapping, now, f"Public WS degraded: {why}", {
            "symbols": named,
            "staleSymbols": stale,
            "reconnects": len(self._reconnects),
            "reconnectWindowS": self.reconnect_window_s,
            "staleAfterS": self.stale_after_s,
        })


class LatencyDetector(Detector):
    """LATENCY_TOO_HIGH when the rolling average over ``window_s`` stays above ``threshold_ms`` for
    ``sustain_s``. With no sample in the window the state is kept: no evidence either way."""

    failure_type = FailureType.LATENCY_TOO_HIGH

    def __init__(self, *, threshold_ms: float, window_s: float, sustain_s: float, clock: Clock,
                 source: str = FailureSource.LATENCY_MONITOR) -> None:
        super().__init__(clock=clock, source=source)
        _positive("threshold_ms", threshold_ms)
        _positive("window_s", window_s)
        _not_negative("sustain_s", sustain_s)
        self.threshold_ms, self.window_s, self.sustain_s = threshold_ms, window_s, sustain_s
        self._samples: deque[tuple[datetime, float]] = deque()
        self._above_since: datetime | None = None

    def record(self, latency_ms: float) -> FailureEvent | None:
        self._samples.append((self._clock.now(), float(latency_ms)))
        return self.check()

    def average_ms(self) -> float | None:
        now = self._clock.now()
        while self._samples and (now - self._samples[0][0]).total_seconds() > self.window_s:
            self._samples.popleft()
        return sum(ms for _, ms in self._samples) / len(self._samples) if self._samples else None

    def check(self) -> FailureEvent | None:
        now = self._clock.now()
        average = self.average_ms()
        if average is None:
            return None
        if average <= self.threshold_ms:
            self._above_since = None
        elif self._above_since is None:
            self._above_since = now
        holds = self._above_since is not None and _seconds(self._above_since, now) >= self.sustain_s
        return self._settle(holds, now, f"Latency too high: average {average:.0f} ms > {self.threshold_ms:g} ms", {
            "averageMs": round(average, 3),
            "thresholdMs": self.threshold_ms,
            "windowS": self.window_s,
            "aboveForS": round(_seconds(self._above_since, now), 3),
            "samples": len(self._samples),
        })


class PacketLossDetector(Detector):
    """PACKET_LOSS: at least ``min_incidents`` failures and reconnects within ``window_s`` while the failures
    stay intermittent. A run of ``unavailable_threshold`` failures in a row is an outage, which
    ``RestFailureDetector`` reports as EXCHANGE_UNAVAILABLE: the condition does not hold during it, and
    the run's failures never count as packet loss afterwards either (an outage that ended is not a flaky
    line; counting it kept safe mode on for a whole window after every clean recovery). Failures count
    once a success has ended their run short of the threshold, so the first seconds of an outage do not
    raise a PACKET_LOSS that the outage clears a moment later."""

    failure_type = FailureType.PACKET_LOSS

    def __init__(self, *, window_s: float, min_incidents: int, unavailable_threshold: int, clock: Clock,
                 source: str = FailureSource.MARKET_DATA_SERVICE) -> None:
        super().__init__(clock=clock, source=source)
        _positive("window_s", window_s)
        _positive("min_incidents", min_incidents)
        _positive("unavailable_threshold", unavailable_threshold)
        self.window_s, self.min_incidents, self.unavailable_threshold = window_s, min_incidents, unavailable_threshold
        self._failures: deque[datetime] = deque()  # failures of runs that ended short of an outage
        self._run: list[datetime] = []  # the current run of failures in a row
        self._reconnects: deque[datetime] = deque()

    def record_failure(self) -> FailureEvent | None:
        self._run.append(self._clock.now())
        return self.check()

    def record_success(self) -> FailureEvent | None:
        if len(self._run) < self.unavailable_threshold:
            self._failures.extend(self._run)  # short runs are the intermittent kind
        self._run = []
        return self.check()

    def record_reconnect(self) -> FailureEvent | None:
        self._reconnects.append(self._clock.now())
        return self.check()

    def check(self) -> FailureEvent | None:
        now = self._clock.now()
        _prune(self._failures, now, self.window_s)
        _prune(self._reconnects, now, self.window_s)
        in_outage = len(self._run) >= self.unavailable_threshold
        # A run still going may be an outage starting: its failures count once a success has ended it short.
        failures = len(self._failures)
        incidents = failures + len(self._reconnects)
        holds = incidents >= self.min_incidents and not in_outage
        return self._settle(holds, now, f"Intermittent connectivity: {incidents} incidents in {self.window_s:g} s", {
            "incidents": incidents,
            "failures": failures,
            "reconnects": len(self._reconnects),
            "windowS": self.window_s,
        })


class ReconciliationDetector(Detector):
    """NON_SYNC_STATE when ``confirmations`` reconciliations in a row find local and exchange apart.

    More than one confirmation rides out a fill that lands between the two REST
    calls of one reconciliation. The event's details are the diffs' evidence.
    """

    failure_type = FailureType.NON_SYNC_STATE

    def __init__(self, *, confirmations: int, clock: Clock, source: str = FailureSource.RECONCILER) -> None:
        super().__init__(clock=clock, source=source)
        _positive("confirmations", confirmations)
        self.confirmations = confirmations
        self.consecutive_out_of_sync = 0

    def observe(self, positions: PositionDiff | None = None, orders: OrderDiff | None = None) -> FailureEvent | None:
        now = self._clock.now()
        in_sync = is_in_sync(positions, orders)
        self.consecutive_out_of_sync = 0 if in_sync else self.consecutive_out_of_sync + 1
        details: dict[str, Any] = {}
        symbols: list[str] = []
        for name, diff in (("positions", positions), ("orders", orders)):
            if diff is not None:
                details[name] = diff.to_details()
                symbols += [d["symbol"] for d in details[name]["differences"]]
        details["symbols"] = list(dict.fromkeys(symbols))
        details["confirmations"] = self.consecutive_out_of_sync
        return self._settle(self.consecutive_out_of_sync >= self.confirmations, now,
                            "Local state differs from the exchange", details)


class ModuleCrashDetector(Detector):
    """MODULE_CRASH while a module keeps crashing: reported at a module's first crash of an episode, held
    until no module has crashed for ``quiet_s``.

    A module that throws on every update would otherwise report thousands of identical failures, each
    one extending the recovery plan; one report per module per episode (the count travels in the next
    module's report and in ``crashes``) keeps the plan to the steps the failure needs, and holding the
    condition until the modules run clean keeps safe mode on while they do not.
    """

    failure_type = FailureType.MODULE_CRASH

    def __init__(self, *, quiet_s: float, clock: Clock, source: str = FailureSource.FAILOVER_MANAGER) -> None:
        super().__init__(clock=clock, source=source)
        _positive("quiet_s", quiet_s)
        self.quiet_s = quiet_s
        self._last_crash: datetime | None = None
        self._modules: set[str] = set()
        self.crashes = 0  # in the current episode

    def record_crash(self, module: str, message: str, details: dict[str, Any]) -> FailureEvent | None:
        """Count one crash of ``module``; return the event at the episode's first crash of this module."""
        now = self._clock.now()
        self._last_crash = now
        self.crashes += 1
        if module in self._modules:
            return None
        self._modules.add(module)
        event = FailureEvent(timestamp=now, type=self.failure_type, source=str(module), message=message,
                             details={**details, "crashesInEpisode": self.crashes})
        self._active_since = self._active_since or now
        self._cleared_unseen = False
        return event

    def check(self) -> FailureEvent | None:
        """End the episode once no module has crashed for ``quiet_s``."""
        now = self._clock.now()
        if self._active_since is not None and _seconds(self._last_crash, now) >= self.quiet_s:
            self._modules.clear()
            self.crashes = 0
            self._settle(False, now, "", {})
        return None
