from __future__ import annotations

from trading.domain.latency import LatencyMonitor
from trading.tests.domain.kit import make_config

CONFIG = make_config(latency={"window": 100, "warn_ms": 50, "error_ms": 90}).latency


def test_latency_average_over_window() -> None:
    monitor = LatencyMonitor(CONFIG)
    for ms in range(1, 101):
        monitor.record("rest", float(ms))

    assert monitor.average("rest") == 50.5


def test_latency_window_is_bounded() -> None:
    monitor = LatencyMonitor(CONFIG)
    for ms in range(1, 101):
        monitor.record("rest", float(ms * 10))
    for _ in range(100):
        monitor.record("rest", 1.0)

    assert monitor.average("rest") == 1.0


def test_latency_partly_filled_window_averages_what_it_holds() -> None:
    monitor = LatencyMonitor(CONFIG)
    for ms in (10.0, 20.0, 60.0):
        monitor.record("rest", ms)

    assert monitor.average("rest") == 30.0


def test_latency_ws_lag_is_receive_minus_exchange_time() -> None:
    monitor = LatencyMonitor(CONFIG)

    assert monitor.record_ws("ws_public", 1_000_250, 1_000_000) == 250
    monitor.record_ws("ws_public", 1_000_050, 1_000_000)

    assert monitor.average("ws_public") == 150.0


def test_latency_channels_are_separate_and_empty_channel_is_zero() -> None:
    monitor = LatencyMonitor(CONFIG)
    monitor.record("rest", 10.0)

    assert monitor.average("ws_private") == 0.0
    assert monitor.average("rest") == 10.0


def test_latency_new_window_size_starts_afresh() -> None:
    monitor = LatencyMonitor(CONFIG)
    monitor.record("rest", 10.0)

    monitor.apply_config(make_config(latency={"window": 200}).latency)

    assert monitor.average("rest") == 0.0
