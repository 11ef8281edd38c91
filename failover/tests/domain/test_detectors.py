"""Each detector fires once when its condition starts and reports once when it clears."""

from __future__ import annotations

import pytest

from failover.domain.detectors import (
    LatencyDetector,
    ModuleCrashDetector,
    PacketLossDetector,
    PrivateStreamDetector,
    PublicStreamDetector,
    ReconciliationDetector,
    RestFailureDetector,
    StreamsDownDetector,
)
from failover.domain.reconcile import diff_orders, diff_positions
from failover.domain.types import FailureType
from failover.tests.domain.kit import FakeClock, order, position


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_rest_failures_fire_exchange_unavailable_once_at_the_threshold(clock):
    detector = RestFailureDetector(threshold=3, clock=clock)
    assert detector.record_failure("503") is None
    assert detector.record_failure("503") is None
    fired = detector.record_failure("rate limit", status_code=429)
    assert fired is not None and fired.type is FailureType.EXCHANGE_UNAVAILABLE
    assert fired.details == {"consecutiveFailures": 3, "lastError": "rate limit", "statusCode": 429}
    assert detector.record_failure("503") is None and detector.is_active  # once, not per failure
    assert not detector.cleared()
    detector.record_success()
    assert not detector.is_active and detector.cleared() and not detector.cleared()


def test_rest_success_in_between_resets_the_count(clock):
    detector = RestFailureDetector(threshold=2, clock=clock)
    detector.record_failure("503")
    detector.record_success()
    assert detector.record_failure("503") is None


def test_streams_down_fires_only_when_both_are_down_past_the_grace(clock):
    detector = StreamsDownDetector(grace_s=5, clock=clock)
    assert detector.observe(private_connected=False, public_connected=True) is None
    assert detector.observe(private_connected=False, public_connected=False) is None
    clock.advance(4)
    assert detector.check() is None
    clock.advance(1)
    fired = detector.check()
    assert fired is not None and fired.type is FailureType.EXCHANGE_UNAVAILABLE
    assert detector.check() is None
    detector.observe(private_connected=True, public_connected=False)
    assert not detector.is_active and detector.cleared()


def _private(clock: FakeClock) -> PrivateStreamDetector:
    return PrivateStreamDetector(silence_limit_s=30, disconnect_grace_s=3, clock=clock)


def test_private_stream_disconnect_fires_after_the_grace_and_clears_on_reconnect(clock):
    detector = _private(clock)
    assert detector.on_connected() is None
    assert detector.on_disconnected() is None
    clock.advance(3)
    fired = detector.check()
    assert fired is not None and fired.type is FailureType.PRIVATE_WS_DISCONNECTED
    assert fired.details["reason"] == "DISCONNECTED"
    assert detector.check() is None
    detector.on_reconnect_attempt()
    assert detector.on_connected() is None
    assert not detector.is_active and detector.cleared()


def test_private_stream_silence_past_ping_and_pong_fires(clock):
    detector = _private(clock)
    detector.on_connected()
    clock.advance(25)
    assert detector.on_message() is None
    clock.advance(30)
    assert detector.check() is None  # exactly at the limit is still alive
    clock.advance(0.5)
    fired = detector.check()
    assert fired is not None and fired.details["reason"] == "SILENT" and fired.details["silentForS"] == 30.5
    detector.on_message()
    assert not detector.is_active


def test_private_stream_gave_up_fires_at_once_and_holds_until_connected(clock):
    detector = _private(clock)
    detector.on_connected()
    fired = detector.on_gave_up()
    assert fired is not None and fired.details["reason"] == "GAVE_UP"
    clock.advance(100)
    assert detector.check() is None and detector.is_active
    detector.on_connected()
    assert detector.cleared()


def test_private_stream_never_connected_fires_after_the_grace(clock):
    detector = _private(clock)
    assert detector.check() is None
    clock.advance(3)
    assert detector.check() is not None


def test_a_stream_built_anew_on_purpose_gets_its_connect_grace_again(clock):
    detector = _private(clock)
    clock.advance(60)  # a standby: no private stream for a minute, and nobody asking
    detector.expect_connect()  # it takes the lease and builds the stream
    assert detector.check() is None
    clock.advance(2.9)
    assert detector.check() is None
    clock.advance(0.1)
    fired = detector.check()  # a stream that does not come up is still an outage
    assert fired is not None and fired.details["reason"] == "DISCONNECTED"


def _public(clock: FakeClock) -> PublicStreamDetector:
    return PublicStreamDetector(max_reconnects=2, reconnect_window_s=60, stale_after_s=10,
                                symbols=["BTCUSDT", "ETHUSDT"], clock=clock)


def test_public_stream_names_the_symbol_without_market_data(clock):
    detector = _public(clock)
    clock.advance(8)
    detector.on_market_data("BTCUSDT")
    clock.advance(3)
    fired = detector.check()
    assert fired is not None and fired.type is FailureType.PUBLIC_WS_DEGRADED
    assert fired.details["symbols"] == ["ETHUSDT"] and "ETHUSDT" in fired.message
    assert detector.on_market_data("BTCUSDT") is None
    detector.on_market_data("ETHUSDT")
    assert not detector.is_active and detector.cleared()


def test_public_stream_reconnect_flapping_fires_and_clears_when_the_window_passes(clock):
    detector = _public(clock)
    for _ in range(2):
        assert detector.on_reconnect() is None
    fired = detector.on_reconnect()
    assert fired is not None and fired.details["reconnects"] == 3
    assert fired.details["symbols"] == ["BTCUSDT", "ETHUSDT"]
    clock.advance(61)
    detector.on_market_data("BTCUSDT")
    detector.on_market_data("ETHUSDT")
    assert not detector.is_active


def test_public_stream_new_symbol_gets_its_own_grace(clock):
    detector = _public(clock)
    clock.advance(9)
    detector.on_market_data("BTCUSDT")
    detector.on_market_data("ETHUSDT")
    detector.set_symbols(["BTCUSDT", "ETHUSDT", "SOLUSDT"])
    clock.advance(5)
    assert detector.check() is None


def test_latency_fires_only_when_the_average_stays_high_for_the_sustain_window(clock):
    detector = LatencyDetector(threshold_ms=300, window_s=30, sustain_s=10, clock=clock)
    assert detector.record(900) is None  # above from now on, but not yet sustained
    clock.advance(5)
    assert detector.record(100) is None  # average 500 ms, still above
    clock.advance(5)
    fired = detector.record(500)
    assert fired is not None and fired.type is FailureType.LATENCY_TOO_HIGH
    assert fired.details["averageMs"] == 500.0
    assert detector.record(500) is None


def test_latency_spike_that_drops_back_resets_the_sustain_clock(clock):
    detector = LatencyDetector(threshold_ms=300, window_s=5, sustain_s=10, clock=clock)
    detector.record(1000)
    clock.advance(6)
    assert detector.record(50) is None  # the spike left the window: average is fine
    clock.advance(6)
    assert detector.record(1000) is None and not detector.is_active


def test_latency_clears_when_the_average_falls_and_keeps_state_without_samples(clock):
    detector = LatencyDetector(threshold_ms=300, window_s=10, sustain_s=0, clock=clock)
    assert detector.record(400) is not None
    clock.advance(20)
    assert detector.check() is None and detector.is_active  # no evidence either way
    detector.record(100)
    assert not detector.is_active and detector.cleared()


def _packet_loss(clock: FakeClock) -> PacketLossDetector:
    return PacketLossDetector(window_s=60, min_incidents=4, unavailable_threshold=3, clock=clock)


def test_packet_loss_fires_on_intermittent_failures_and_reconnects(clock):
    detector = _packet_loss(clock)
    detector.record_failure()
    detector.record_success()
    detector.record_reconnect()
    detector.record_failure()
    detector.record_success()
    fired = detector.record_reconnect()
    assert fired is not None and fired.type is FailureType.PACKET_LOSS
    assert fired.details == {"incidents": 4, "failures": 2, "reconnects": 2, "windowS": 60}
    assert detector.record_reconnect() is None
    clock.advance(61)
    assert detector.check() is None and not detector.is_active and detector.cleared()


def test_packet_loss_stays_quiet_during_an_outage(clock):
    detector = _packet_loss(clock)
    detector.record_reconnect()
    for _ in range(3):
        assert detector.record_failure() is None  # three in a row: an outage, not packet loss
    assert not detector.is_active


def test_reconciliation_fires_non_sync_with_the_diff_as_evidence(clock):
    detector = ReconciliationDetector(confirmations=2, clock=clock)
    positions = diff_positions([], [position("ETHUSDT")])
    orders = diff_orders([], [], now_ms=0, recent_window_ms=1)
    assert detector.observe(positions, orders) is None  # once could be a fill between two calls
    fired = detector.observe(positions, orders)
    assert fired is not None and fired.type is FailureType.NON_SYNC_STATE
    assert fired.details["symbols"] == ["ETHUSDT"]
    assert fired.details["positions"]["differences"][0]["kind"] == "EXTERNAL_POSITION_RECOVERED"
    assert detector.observe(positions, orders) is None
    assert detector.observe(diff_positions([], []), orders) is None
    assert not detector.is_active and detector.cleared()


def test_reconciliation_in_sync_resets_the_confirmation_count(clock):
    detector = ReconciliationDetector(confirmations=2, clock=clock)
    bad = diff_orders([], [order()], now_ms=0, recent_window_ms=1)
    detector.observe(orders=bad)
    detector.observe(orders=diff_orders([], [], now_ms=0, recent_window_ms=1))
    assert detector.observe(orders=bad) is None


def test_thresholds_are_validated():
    with pytest.raises(ValueError, match="threshold"):
        RestFailureDetector(threshold=0, clock=FakeClock())
    with pytest.raises(ValueError, match="window_s"):
        LatencyDetector(threshold_ms=1, window_s=0, sustain_s=1, clock=FakeClock())


def test_fired_event_carries_the_clock_time_and_source(clock):
    clock.advance(42)
    fired = RestFailureDetector(threshold=1, clock=clock, source="BYBIT_ADAPTER").record_failure("503")
    assert fired.timestamp == clock.now() and fired.source == "BYBIT_ADAPTER"


def test_a_crash_loop_is_one_report_per_module_held_until_the_modules_run_clean(clock):
    detector = ModuleCrashDetector(quiet_s=5, clock=clock)
    first = detector.record_crash("FEATURE_ENGINE", "FEATURE_ENGINE crashed: boom", {"error": "boom"})
    assert first is not None and first.type is FailureType.MODULE_CRASH and first.source == "FEATURE_ENGINE"
    assert first.details == {"error": "boom", "crashesInEpisode": 1}
    for _ in range(500):  # the module throws on every update
        clock.advance(0.01)
        assert detector.record_crash("FEATURE_ENGINE", "again", {}) is None
    other = detector.record_crash("STATE_MACHINE", "STATE_MACHINE crashed", {})
    assert other is not None and other.details["crashesInEpisode"] == 502  # a second module is news
    clock.advance(4.9)
    detector.check()
    assert detector.is_active and not detector.cleared()  # still inside the quiet period
    clock.advance(0.1)
    detector.check()
    assert not detector.is_active and detector.cleared() and not detector.cleared()
    again = detector.record_crash("FEATURE_ENGINE", "a new episode", {})
    assert again is not None and again.details["crashesInEpisode"] == 1 and detector.is_active


def test_crash_detector_rejects_a_zero_quiet_period(clock):
    with pytest.raises(ValueError):
        ModuleCrashDetector(quiet_s=0, clock=clock)


def test_an_outage_that_ended_does_not_count_as_packet_loss_afterwards(clock):
    detector = _packet_loss(clock)
    for _ in range(10):  # a hard outage: 10 failures in a row
        clock.advance(1)
        assert detector.record_failure() is None
    clock.advance(1)
    assert detector.record_success() is None  # the exchange answers again: nothing intermittent happened
    assert not detector.is_active
    detector.record_reconnect()  # the streams come back
    detector.record_reconnect()
    assert not detector.is_active
    # Short runs still count, once a success has ended them: two failures, then the exchange answers.
    assert detector.record_failure() is None
    assert detector.record_failure() is None  # could be an outage starting: not counted yet
    fired = detector.record_success()
    assert fired is not None and fired.details["failures"] == 2 and fired.details["reconnects"] == 2


def test_the_start_of_an_outage_is_not_packet_loss_even_after_reconnects(clock):
    detector = _packet_loss(clock)
    detector.record_reconnect()
    detector.record_reconnect()  # every socket dropped
    assert detector.record_failure() is None and detector.record_failure() is None
    assert detector.record_failure() is None  # the third in a row: an outage, EXCHANGE_UNAVAILABLE's
    assert not detector.is_active and not detector.cleared()  # never raised, so nothing to clear
