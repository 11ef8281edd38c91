"""The one clock: epoch milliseconds and aware UTC datetimes from the same reading."""

from __future__ import annotations

from datetime import UTC, datetime

from failover.domain.clock import ManualClock, from_epoch_ms, iso_ms, to_epoch_ms

T0_MS = 1_763_479_260_000  # 2025-11-18T15:21:00.000Z


def test_iso_ms_keeps_milliseconds() -> None:
    assert iso_ms(T0_MS + 7) == "2025-11-18T15:21:00.007Z"


def test_manual_clock_tells_the_same_time_in_both_units() -> None:
    clock = ManualClock(T0_MS)
    clock.advance(7)
    assert clock.now_ms() == T0_MS + 7
    assert clock.now() == datetime(2025, 11, 18, 15, 21, 0, 7000, tzinfo=UTC)


def test_epoch_ms_conversions_are_exact_both_ways() -> None:
    moment = datetime(2025, 11, 18, 15, 21, 0, 123999, tzinfo=UTC)
    assert to_epoch_ms(moment) == T0_MS + 123  # truncated, like every stored timestamp
    assert from_epoch_ms(T0_MS + 123) == moment.replace(microsecond=123000)
    assert ManualClock.at(moment).now() == moment.replace(microsecond=123000)
