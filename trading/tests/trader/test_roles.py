"""The role rules that need no process: what a new leader reports for the previous holder of the lease."""

from __future__ import annotations

from datetime import UTC, datetime

from failover.domain.enums import FailureSource, FailureType
from failover.domain.types import FailureEvent
from trading.exchange.lease import LeaseRecord
from trading.trader.role import takeover_events

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
