"""The trader's view of safe mode fails closed: unconfirmed means ON.

Time is a ManualClock: a test moves it rather than sleeping. The tests that start
the link's threads wait on events the fakes set, never on the clock.
"""

from __future__ import annotations

import threading

from django.db import OperationalError

from failover.domain.clock import ManualClock
from failover.domain.enums import FailureSource, FailureType, utc_now
from failover.domain.types import FailureEvent
from trading.engine.failover_link import PENDING_GRACE_MS, FailoverLink
from trading.tests.trader.fakes import Gate

T0 = 1_763_479_200_000
WAIT_S = 10  # a bound on waiting for the link's threads, never reached when the code is right




class Database:
    """The failover state as the trader reads it, and an outage switch."""

    def __init__(self) -> None:
        self.gate = Gate()
        self.down = False
        self.reports: list[FailureEvent] = []
        self.refused_a_report = threading.Event()
        self.took_a_report = threading.Event()

    def failover_gate(self, *, run_id: str) -> Gate:
        if self.down:
            raise OperationalError("could not connect to server")
        return self.gate

    def failure_report(self, *, event: FailureEvent, run_id: str) -> Gate:
        if self.down:
            self.refused_a_report.set()
            raise OperationalError("could not connect to server")
        self.reports.append(event)
        self.gate = Gate(safe_mode=True, reason=event.type.value, version=self.gate.version + 1)
        self.took_a_report.set()
        return self.gate


def link_on(db: Database, clock: ManualClock, **options) -> FailoverLink:
    options.setdefault("confirm_timeout_ms", 60_000)
    return FailoverLink(run_id="", services=db, clock=clock, **options)


def test_safe_mode_is_on_until_the_state_is_first_confirmed():
    link = link_on(Database(), ManualClock(T0), confirm_timeout_ms=5_000)
    assert link.is_safe_mode()
    assert link.refresh() and not link.is_safe_mode()


def test_an_unconfirmable_state_counts_as_safe_mode_after_the_bound():
    db, clock = Database(), ManualClock(T0)
    link = link_on(db, clock, confirm_timeout_ms=100)
    assert link.refresh() and not link.is_safe_mode()
    db.down = True
    assert link.refresh() is False
    clock.advance(100)
    assert not link.is_safe_mode()  # within the bound the last confirmed state holds
    clock.advance(1)
    assert link.is_safe_mode() and link.entries_blocked_reason() == "SAFE_MODE_ACTIVE"
    db.down = False
    assert link.refresh() and not link.is_safe_mode()


def test_a_detected_failure_blocks_entries_before_the_database_knows_and_is_reported_when_it_is_back():
    db = Database()
    link = link_on(db, ManualClock(T0)).start()
    try:
        link.refresh()
        db.down = True
        link.report(
            FailureEvent(
                timestamp=utc_now(),
                type=FailureType.MODULE_CRASH,
                source=FailureSource.FEATURE_ENGINE,
                message="boom",
                details={},
            )
        )
        assert link.is_safe_mode()
        assert db.refused_a_report.wait(WAIT_S)  # the reporter tried while the database was down
        assert link.is_safe_mode() and db.reports == []
        db.down = False
        link.drain(WAIT_S)
        assert db.took_a_report.wait(WAIT_S)  # its retry got through
        assert [e.type for e in db.reports] == [FailureType.MODULE_CRASH]
        assert link.is_safe_mode() and link.reason == "MODULE_CRASH"
    finally:
        link.stop()


def test_a_report_is_retried_until_it_lands_never_dropped_and_only_then_the_latch_can_lift():
    """Dropped after five failures, a report left the latch on for ever: entries refused while the
    database said safe mode OFF. It is retried until it lands; then the database's state rules."""
    db = Database()
    failures = [12]  # more than any fixed number of attempts

    def flaky_report(*, event: FailureEvent, run_id: str) -> Gate:
        if failures[0] > 0:
            failures[0] -= 1
            raise RuntimeError("a bug in an alert sink")
        return Database.failure_report(db, event=event, run_id=run_id)

    db.failure_report = flaky_report  # type: ignore[method-assign]
    link = link_on(db, ManualClock(T0), retry_base_s=0.001, retry_max_s=0.005).start()
    try:
        link.refresh()
        link.report(FailureEvent(timestamp=utc_now(), type=FailureType.NON_SYNC_STATE,
                                 source=FailureSource.RECONCILER, message="apart", details={}))
        assert db.took_a_report.wait(WAIT_S) and failures == [0]
        db.gate = Gate(safe_mode=False, version=db.gate.version + 1)  # its plan done, safe mode OFF
        link.refresh()
        assert not link.is_safe_mode()
    finally:
        link.stop()


def _changed(**payload) -> dict:
    return {"kind": "failover.changed", "payload": payload}


def test_safe_mode_on_is_taken_from_the_bus_before_the_database_shows_it_and_held_until_it_does():
    db = Database()
    link = link_on(db, ManualClock(T0))
    assert link.refresh() and not link.is_safe_mode()
    # Another process announced version 2 before its commit: the database still says version 1, OFF.
    link.on_bus_message(_changed(version=2, safeMode=True, reason="EXCHANGE_UNAVAILABLE"))
    assert link.is_safe_mode()
    assert link.refresh() and link.is_safe_mode()  # a read of the old version does not lift it
    db.gate = Gate(safe_mode=True, reason="EXCHANGE_UNAVAILABLE", version=2)
    assert link.refresh() and link.is_safe_mode() and link.reason == "EXCHANGE_UNAVAILABLE"
    db.gate = Gate(safe_mode=False, version=3)
    assert link.refresh() and not link.is_safe_mode()  # the latch is gone once the database caught up


def test_the_bus_can_never_turn_safe_mode_off_and_old_or_malformed_messages_change_nothing():
    db = Database()
    db.gate = Gate(safe_mode=True, reason="MODULE_CRASH", version=5)
    link = link_on(db, ManualClock(T0))
    link.refresh()
    link.on_bus_message(_changed(version=6, safeMode=False))
    assert link.is_safe_mode()  # only the database may say OFF
    db.gate = Gate(safe_mode=False, version=6)
    link.refresh()
    assert not link.is_safe_mode()
    for message in (_changed(version=4, safeMode=True), _changed(version="7", safeMode=True),
                    _changed(safeMode=True), {"kind": "failover.changed", "payload": None}, {"kind": "other"}):
        link.on_bus_message(message)
        assert not link.is_safe_mode(), message


def test_a_pending_announcement_blocks_entries_until_the_database_moves_past_the_version_known():
    db = Database()
    link = link_on(db, ManualClock(T0))
    assert link.refresh() and not link.is_safe_mode()
    # Announced before the reporter wrote anything: no version yet.
    link.on_bus_message(_changed(safeMode=True, reason="LATENCY_TOO_HIGH", pending=True))
    assert link.is_safe_mode() and link.entries_blocked_reason() == "SAFE_MODE_ACTIVE"
    assert link.refresh() and link.is_safe_mode()  # the database has not moved yet
    db.gate = Gate(safe_mode=True, reason="LATENCY_TOO_HIGH", version=2)
    assert link.refresh() and link.is_safe_mode() and link.reason == "LATENCY_TOO_HIGH"
    db.gate = Gate(safe_mode=False, version=3)
    assert link.refresh() and not link.is_safe_mode()


def test_a_pending_announcement_whose_report_never_lands_expires_after_the_confirmation_bound():
    db, clock = Database(), ManualClock(T0)
    link = link_on(db, clock, confirm_timeout_ms=100)
    assert link.refresh()
    link.on_bus_message(_changed(safeMode=True, reason="PACKET_LOSS", pending=True))
    assert link.refresh() and link.is_safe_mode()
    clock.advance(100)
    assert link.refresh() and link.is_safe_mode()  # held for the whole bound
    clock.advance(1)
    assert link.refresh() and not link.is_safe_mode()  # the reporter died before writing: the database rules


def test_a_versioned_announcement_after_a_pending_one_is_held_until_that_version_without_expiry():
    db, clock = Database(), ManualClock(T0)
    link = link_on(db, clock, confirm_timeout_ms=100)
    assert link.refresh()
    link.on_bus_message(_changed(safeMode=True, reason="PACKET_LOSS", pending=True))
    link.on_bus_message(_changed(version=3, safeMode=True, reason="PACKET_LOSS"))
    clock.advance(150)
    db.gate = Gate(safe_mode=False, version=2)
    assert link.refresh() and link.is_safe_mode()  # version 3 is being committed: no expiry
    db.gate = Gate(safe_mode=True, reason="PACKET_LOSS", version=3)
    assert link.refresh() and link.is_safe_mode()


def test_once_started_a_bus_message_latches_on_the_bus_thread_and_the_read_follows_on_the_refresh_thread():
    db = Database()
    reads: list[str] = []
    real_read = db.failover_gate

    def read(*, run_id: str) -> Gate:
        reads.append(threading.current_thread().name)
        return real_read(run_id=run_id)

    db.failover_gate = read
    seen_version_2 = threading.Event()

    def on_change(state: Gate) -> None:
        if state.version == 2:
            seen_version_2.set()

    link = link_on(db, ManualClock(T0), refresh_interval_s=30, on_change=on_change).start()
    try:
        link.refresh()
        reads.clear()
        db.gate = Gate(safe_mode=True, reason="LATENCY_TOO_HIGH", version=2)  # committed, then announced
        link.on_bus_message(_changed(version=2, safeMode=True, reason="LATENCY_TOO_HIGH"))
        assert link.is_safe_mode() and reads == []  # latched here, without waiting for the database
        assert seen_version_2.wait(WAIT_S)
        assert link.version == 2 and reads and set(reads) == {"failover-refresh"}
    finally:
        link.stop()


def test_a_pending_announcement_delivered_after_a_newer_read_is_ignored():
    db, clock = Database(), ManualClock(T0)
    link = link_on(db, clock)
    sent = clock.now_ms() / 1000  # the bus stamps messages with the wall clock in seconds
    db.gate = Gate(safe_mode=False, version=3)  # the report landed and its plan already finished
    clock.advance(PENDING_GRACE_MS + 2)
    assert link.refresh() and not link.is_safe_mode()
    late = {**_changed(safeMode=True, reason="PACKET_LOSS", pending=True), "sentAt": sent}
    link.on_bus_message(late)
    assert not link.is_safe_mode()
    clock.advance(2)
    fresh = {**_changed(safeMode=True, reason="PACKET_LOSS", pending=True), "sentAt": clock.now_ms() / 1000}
    link.on_bus_message(fresh)
    assert link.is_safe_mode()


def test_a_pending_announcement_delivered_after_a_read_begun_within_the_grace_still_blocks_entries():
    db, clock = Database(), ManualClock(T0)
    link = link_on(db, clock)
    sent = clock.now_ms() / 1000
    clock.advance(1)  # a read on the refresh thread begins while the announcement crosses the bus
    assert link.refresh() and not link.is_safe_mode()  # the report is not written yet
    link.on_bus_message({**_changed(safeMode=True, reason="PACKET_LOSS", pending=True), "sentAt": sent})
    assert link.is_safe_mode()
    db.gate = Gate(safe_mode=True, reason="PACKET_LOSS", version=2)
    assert link.refresh() and link.is_safe_mode()


def test_the_confirmation_bound_follows_the_failover_config():
    from trading.domain.config import DEFAULT_CONFIG

    clock = ManualClock(T0)
    link = link_on(Database(), clock)
    link.apply_config(DEFAULT_CONFIG.failover.model_copy(update={"state_confirm_timeout_s": 0.1}))
    assert link.refresh() and not link.is_safe_mode()
    clock.advance(101)
    assert link.is_safe_mode()  # unconfirmed for longer than the configured 0.1 s
