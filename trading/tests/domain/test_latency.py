from __future__ import annotations

from trading.domain.latency import ERROR, OK, WARN, LatencyMonitor, percentile
from trading.tests.domain.kit import make_config

CONFIG = make_config(latency={"window": 100, "warn_ms": 50, "error_ms": 90}).latency


def test_latency_average_and_p99_over_window() -> None:
    monitor = LatencyMonitor(CONFIG)
    for ms in range(1, 101):
        monitor.record("rest", float(ms))

    snap = monitor.channel("rest")

    assert (snap.samples, snap.total) == (100, 100)
    assert snap.avg_ms == 50.5
    assert snap.p99_ms == 99.0  # nearest rank: the 99th of 100
    assert snap.max_ms == 100.0
    assert snap.last_ms == 100.0
    assert snap.status == WARN


def test_latency_window_is_bounded() -> None:
    monitor = LatencyMonitor(CONFIG)
    for ms in range(1, 101):
        monitor.record("rest", float(ms * 10))
    for _ in range(100):
        monitor.record("rest", 1.0)

    snap = monitor.channel("rest")

    assert (snap.samples, snap.total) == (100, 200)
    assert (snap.avg_ms, snap.p99_ms, snap.max_ms) == (1.0, 1.0, 1.0)
    assert snap.status == OK


def test_latency_ws_lag_is_receive_minus_exchange_time() -> None:
    monitor = LatencyMonitor(CONFIG)

    assert monitor.record_ws("ws_public", 1_000_250, 1_000_000) == 250
    monitor.record_ws("ws_public", 1_000_050, 1_000_000)

    assert monitor.average("ws_public") == 150.0
    assert monitor.channel("ws_public").status == ERROR
    assert monitor.snapshot()["ws_public"].to_dict()["p99Ms"] == 250.0


def test_latency_channels_are_separate_and_empty_channel_is_zero() -> None:
    monitor = LatencyMonitor(CONFIG)
    monitor.record("rest", 10.0)

    assert monitor.average("ws_private") == 0.0
    assert monitor.channel("ws_private").samples == 0
    assert list(monitor.snapshot()) == ["rest"]


def test_percentile_nearest_rank() -> None:
    assert percentile([], 99) == 0.0
    assert percentile([5.0], 99) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
