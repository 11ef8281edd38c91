"""The role rules that need no process: what a new leader reports for the previous holder of the lease."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from django.db import OperationalError

from failover.domain.enums import FailureSource, FailureType
from failover.domain.types import FailureEvent
from trading.exchange.lease import LEADER, STANDBY, LeaseRecord
from trading.trader.role import RoleSwitch, takeover_events

NOW = datetime(2025, 11, 18, 15, 20, tzinfo=UTC)


def _previous(*, holder: str = "host-a:11:aa", ttl_s: float = 10.0) -> LeaseRecord:
    return LeaseRecord(token=7, holder=holder, host="host-a", pid=11, run_id="", renewed_at=1763479195.0,
                       ttl_s=ttl_s, expires_at=1763479195.0 + ttl_s)


def _own(kind: FailureType, **details) -> FailureEvent:
    return FailureEvent(timestamp=NOW, type=kind, source=FailureSource.PROCESS_STATE_STORE, message="own",
                        details=details)


def test_a_lapsed_lease_of_another_holder_is_an_unexpected_shutdown_replacing_a_first_start():
    first_start = _own(FailureType.PROCESS_RESTART, firstStart=True)
    [event] = takeover_events(_previous(), holder="host-b:22:bb", already=[first_start], at=NOW)
    assert event.type is FailureType.UNEXPECTED_SHUTDOWN and event.source == "ACCOUNT_LEASE"
    assert event.details["previousHolder"] == "host-a:11:aa" and event.details["previousToken"] == 7


def test_a_lease_given_back_is_a_graceful_restart_and_one_restart_verdict_is_kept():
    corrupt = _own(FailureType.DATA_CORRUPTION)
    [kept, event] = takeover_events(_previous(ttl_s=0.0), holder="b", already=[corrupt], at=NOW)
    assert kept is corrupt and event.type is FailureType.PROCESS_RESTART
    restart = _own(FailureType.PROCESS_RESTART)
    assert takeover_events(_previous(ttl_s=0.0), holder="b", already=[restart], at=NOW) == [restart]


def test_the_own_folder_already_saying_unexpected_shutdown_is_not_reported_twice():
    own = _own(FailureType.UNEXPECTED_SHUTDOWN)
    assert takeover_events(_previous(), holder="b", already=[own], at=NOW) == [own]


def test_no_previous_holder_or_our_own_lease_adds_nothing():
    own = _own(FailureType.PROCESS_RESTART, firstStart=True)
    assert takeover_events(None, holder="b", already=[own], at=NOW) == [own]
    assert takeover_events(_previous(holder="b"), holder="b", already=[], at=NOW) == []


class _Recorded:
    """What a takeover hands on: crashes, reports and event lines."""

    def __init__(self) -> None:
        self.crashes: list[tuple[str, str]] = []
        self.reports: list[FailureType] = []
        self.lines: list[str] = []


def _switch(recorded: _Recorded, monkeypatch) -> tuple[RoleSwitch, SimpleNamespace]:
    lease = SimpleNamespace(holder="host-b:22:bb", view=lambda: {"held": True})
    ctx = SimpleNamespace(
        role=STANDBY, lease=lease, clock=SimpleNamespace(now=lambda: NOW),
        report_event=lambda event: recorded.reports.append(event.type),
        report_config_standing=lambda: None,
        events=SimpleNamespace(write=lambda symbol, event, **fields: recorded.lines.append(event)),
    )
    monkeypatch.setattr("trading.trader.startup.register_environment", lambda ctx: None)
    switch = RoleSwitch(ctx, start_failures=[])  # type: ignore[arg-type]

    def reload_state() -> None:
        raise OperationalError("the connection is closed")

    core = SimpleNamespace(report_crash=lambda module, exc, symbol: recorded.crashes.append((module, str(exc))))
    switch.attach(SimpleNamespace(core=core), None, SimpleNamespace(reload_state=reload_state))  # type: ignore[arg-type]
    return switch, ctx


def test_a_takeover_whose_state_cannot_be_read_leads_latched_and_reports_the_crash(monkeypatch):
    recorded = _Recorded()
    switch, ctx = _switch(recorded, monkeypatch)
    attempt = SimpleNamespace(previous=_previous())

    switch.lead(attempt)  # type: ignore[arg-type]

    assert ctx.role == LEADER  # not a standby holding the lease: nobody would ever trade
    assert recorded.crashes == [("TRADER_LEASE", "the connection is closed")]  # MODULE_CRASH: its plan resyncs
    assert recorded.reports == [FailureType.UNEXPECTED_SHUTDOWN]  # the previous leader's lapse, reported as ever
    assert recorded.lines == ["LEASE_ACQUIRED"]
