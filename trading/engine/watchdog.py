"""The trader's watchdog: every failure detector, fed from what the trader itself measures.

It runs on the pipeline thread. Observations arrive as cheap calls (a REST
result, a market message for a symbol, a reconciliation); ``check()`` runs a few
times a second, turns stream measurements into detector input, and returns the
failures that started and the failure types whose conditions cleared (a type is
cleared only when no detector of that type is active any more).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from failover.domain.clock import Clock
from failover.domain.detectors import (
    Detector,
    LatencyDetector,
    ModuleCrashDetector,
    PacketLossDetector,
    PrivateStreamDetector,
    PublicStreamDetector,
    ReconciliationDetector,
    RestFailureDetector,
    StreamsDownDetector,
)
from failover.domain.reconcile import OrderDiff, PositionDiff
from failover.domain.types import FailureEvent
from trading.domain.config import TradingConfig
from trading.exchange.port import StreamStatus

logger = logging.getLogger(__name__)


@dataclass
class WatchdogReport:
    started: list[FailureEvent] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)


class Watchdog:
    """Own the detectors of one trader; they all read time from ``clock``."""

    def __init__(
        self,
        *,
        config: TradingConfig,
        symbols: Iterable[str],
        clock: Clock,
        ping_interval_s: float,
        pong_timeout_s: float,
        connect_grace_s: float = 3.0,  # a drop pybit has not healed by then is a real disconnect
    ) -> None:
        self._min_silence_s = ping_interval_s + pong_timeout_s  # a healthy stream answers a ping within this
        t = self._thresholds(config)
        self.rest = RestFailureDetector(**t["rest"], clock=clock)
        self.streams_down = StreamsDownDetector(grace_s=connect_grace_s, clock=clock)
        self.private = PrivateStreamDetector(**t["private"], disconnect_grace_s=connect_grace_s, clock=clock)
        self.public = PublicStreamDetector(**t["public"], symbols=symbols, clock=clock)
        self.latency = LatencyDetector(**t["latency"], clock=clock)
        self.packet_loss = PacketLossDetector(**t["packet_loss"], min_incidents=3, clock=clock)
        self.reconciliation = ReconciliationDetector(confirmations=2, clock=clock)
        self.crash = ModuleCrashDetector(**t["crash"], clock=clock)
        self.detectors: list[Detector] = [
            self.rest,
            self.streams_down,
            self.private,
            self.public,
            self.latency,
            self.packet_loss,
            self.reconciliation,
            self.crash,
        ]
        self._started: list[FailureEvent] = []
        self._active_types: set[str] = set()
        self._seen_data: dict[str, int] = {}
        self._stream_memory: dict[str, tuple[bool, int, int]] = {}
        self.rest_failures_in_a_row = 0
        self._clock = clock
        self._last_incident_ms: dict[str, int] = {}  # per detector attribute: its quiet window runs from here

    def _silence_limit(self, configured_s: float) -> float:
        if configured_s >= self._min_silence_s:
            return configured_s
        logger.warning(
            "failover.detectors.private_silence_s=%g is below the ping interval plus pong timeout; using %g s",
            configured_s,
            self._min_silence_s,
        )
        return self._min_silence_s

    def _thresholds(self, config: TradingConfig) -> dict[str, dict[str, Any]]:
        """Each config-driven detector's thresholds, by detector attribute: its constructor takes the same names."""
        d = config.failover.detectors
        return {
            "rest": {"threshold": d.rest_failures_unavailable},
            "private": {"silence_limit_s": self._silence_limit(d.private_silence_s)},
            "public": {
                "max_reconnects": d.public_reconnects_max,
                "reconnect_window_s": d.public_reconnects_window_s,
                "stale_after_s": d.market_data_stale_s,
            },
            "latency": {
                "threshold_ms": d.latency_avg_ms,
                "window_s": max(d.latency_sustain_s, 5.0),
                "sustain_s": d.latency_sustain_s,
            },
            "packet_loss": {"window_s": d.packet_loss_window_s, "unavailable_threshold": d.rest_failures_unavailable},
            "crash": {"quiet_s": d.module_crash_quiet_s},
        }

    def apply_config(self, config: TradingConfig) -> None:
        """Put a hot-reloaded config's thresholds in force; what each detector has observed is kept."""
        for name, values in self._thresholds(config).items():
            detector = getattr(self, name)
            for attribute, value in values.items():
                setattr(detector, attribute, value)

    def _collect(self, event: FailureEvent | None) -> None:
        if event is not None:
            self._started.append(event)

    # -- observations (cheap) ----------------------------------------------

    def on_rest(self, ok: bool, elapsed_ms: float, error: str = "") -> None:
        if ok:
            self.rest_failures_in_a_row = 0
            self.rest.record_success()
            self._collect(self.packet_loss.record_success())
            self._collect(self.latency.record(elapsed_ms))
        else:
            self.rest_failures_in_a_row += 1
            self._incident("packet_loss")
            self._collect(self.rest.record_failure(error))
            self._collect(self.packet_loss.record_failure())

    def on_latency(self, average_ms: float) -> None:
        """Feed the rolling WebSocket lag (exchange timestamp to arrival) to the latency detector."""
        self._collect(self.latency.record(average_ms))

    def on_market_data(self, symbol: str) -> None:
        self._seen_data[symbol] = 1

    def on_crash(self, module: str, message: str, details: dict[str, Any]) -> FailureEvent | None:
        """Count a module crash; return the failure to report now (a module's first crash of an episode)."""
        self._incident("crash")
        return self.crash.record_crash(module, message, details)

    def on_reconciliation(self, positions: PositionDiff, orders: OrderDiff) -> None:
        self._collect(self.reconciliation.observe(positions, orders))

    def _stream(
        self,
        status: StreamStatus,
        on_connected: Callable[[], FailureEvent | None],
        on_disconnected: Callable[[], FailureEvent | None],
        on_message: Callable[[], object] | None,
        on_reconnect: Callable[[], FailureEvent | None] | None,
    ) -> None:
        was_connected, last_message, opens = self._stream_memory.get(status.name, (False, 0, 0))
        if status.connected and not was_connected:
            self._collect(on_connected())
        elif not status.connected and was_connected:
            self._collect(on_disconnected())
        if on_message is not None and status.last_message_ms != last_message and status.connected:
            result = on_message()
            if isinstance(result, FailureEvent):
                self._collect(result)
        for _ in range(min(status.opens - opens, 10) if opens > 0 else 0):
            if on_reconnect is not None:
                self._incident("public")
                self._collect(on_reconnect())
            self._incident("packet_loss")
            self._collect(self.packet_loss.record_reconnect())
        self._stream_memory[status.name] = (status.connected, status.last_message_ms, status.opens)

    def expect_private_connect(self) -> None:
        """The private stream is built anew on purpose (a standby taking the lease): its connect grace starts now,
        and its first open is neither a reconnect nor a packet-loss incident."""
        self.private.expect_connect()
        self._stream_memory.pop("private", None)

    def _incident(self, name: str) -> None:
        self._last_incident_ms[name] = self._clock.now_ms()

    # -- reading --------------------------------------------------------------

    def detector_status(self) -> dict[str, dict[str, Any]]:
        """Per detector (by attribute name): its failure type, whether it is active, its last incident (epoch ms).

        An incident is what a quiet window waits out: a REST failure or a reconnect (packet loss), a public
        reconnect, a module crash. Detectors without a quiet window report ``lastIncidentMs`` None.
        """
        names = ("rest", "streams_down", "private", "public", "latency", "packet_loss", "reconciliation", "crash")
        return {
            name: {
                "type": getattr(self, name).failure_type.value,
                "active": getattr(self, name).is_active,
                "lastIncidentMs": self._last_incident_ms.get(name),
            }
            for name in names
        }

    # -- evaluation ---------------------------------------------------------

    def check(self, *, public: StreamStatus | None, private: StreamStatus | None) -> WatchdogReport:
        """Evaluate every detector; return what started and what cleared since the last call."""
        if private is not None:
            self._stream(
                private, self.private.on_connected, self.private.on_disconnected, self.private.on_message, None
            )
            if private.gave_up and private.connected is False:
                self._collect(self.private.on_gave_up())
        if public is not None:
            self._stream(public, lambda: None, lambda: None, None, self.public.on_reconnect)
        for symbol in self._seen_data:
            self._collect(self.public.on_market_data(symbol))
        self._seen_data.clear()
        if public is not None and private is not None:
            self._collect(
                self.streams_down.observe(private_connected=private.connected, public_connected=public.connected)
            )
        for detector in self.detectors:
            check = getattr(detector, "check", None)
            if check is not None:
                self._collect(check())
        report = WatchdogReport(started=self._started)
        self._started = []
        active = {d.failure_type.value for d in self.detectors if d.is_active}
        for d in self.detectors:
            d.cleared()  # consume the one-shot flag; the type-level rule below decides
        report.cleared = sorted(self._active_types - active)
        self._active_types = active | {e.type.value for e in report.started}
        return report
