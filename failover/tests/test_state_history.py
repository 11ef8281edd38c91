"""The failover state's history: the intervals rule (pure), the copy of every version, the reads, the retention."""

from __future__ import annotations

import importlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import Client

from failover import selectors, services
from failover.admin import FailoverStateChangeAdmin
from failover.domain.clock import ManualClock, to_epoch_ms
from failover.domain.state_history import BlockedInterval, StateChange, blocked_intervals, in_window
from failover.domain.types import FailureEvent, SchemaError
from failover.models import FailoverStateChange, FailoverStateRecord
from failover.recovery import history, records
from failover.tasks import prune_state_history

T0 = datetime(2025, 11, 18, 15, 20, 0, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _change(version: int, seconds: float, *, safe: bool, trading: bool = True, reason: str | None = None
            ) -> StateChange:
    return StateChange(version=version, at=_at(seconds), safe_mode=safe, trading_enabled=trading, reason=reason)


# -- the intervals rule (pure) -------------------------------------------------------------------------------


def test_no_history_has_no_interval():
    assert blocked_intervals([]) == []


def test_a_history_never_blocked_has_no_interval():
    assert blocked_intervals([_change(3, 0, safe=False), _change(4, 10, safe=False, reason=None)]) == []


def test_a_history_starting_in_safe_mode_opens_its_first_interval_at_the_first_change():
    changes = [_change(0, 0, safe=True), _change(1, 5, safe=True, reason="EXCHANGE_UNAVAILABLE"),
               _change(2, 30, safe=False)]
    assert blocked_intervals(changes) == [
        BlockedInterval(start=_at(0), end=_at(30), reason="EXCHANGE_UNAVAILABLE", from_version=0, to_version=1,
                        halted=False)]


def test_an_interval_still_on_at_the_end_has_no_end():
    changes = [_change(0, 0, safe=False), _change(1, 10, safe=True, reason="PACKET_LOSS"),
               _change(2, 20, safe=True, reason="PACKET_LOSS")]
    [interval] = blocked_intervals(changes)
    assert (interval.start, interval.end, interval.from_version, interval.to_version) == (_at(10), None, 1, 2)


def test_safe_mode_and_a_trading_halt_back_to_back_are_one_interval_marked_halted():
    changes = [
        _change(0, 0, safe=False),
        _change(1, 10, safe=True, reason="CONFIG_INVALID"),
        _change(2, 11, safe=True, trading=False, reason="CONFIG_INVALID"),
        _change(3, 20, safe=False, trading=False),  # a forced exit: safe mode off, entries still disabled
        _change(4, 30, safe=False),
    ]
    assert blocked_intervals(changes) == [
        BlockedInterval(start=_at(10), end=_at(30), reason="CONFIG_INVALID", from_version=1, to_version=3,
                        halted=True)]


def test_a_halt_alone_is_an_interval_without_reason():
    changes = [_change(5, 0, safe=False), _change(6, 10, safe=False, trading=False), _change(7, 15, safe=False)]
    assert blocked_intervals(changes) == [
        BlockedInterval(start=_at(10), end=_at(15), reason=None, from_version=6, to_version=6, halted=True)]


def test_separate_intervals_come_oldest_first_each_with_its_first_reason():
    changes = [
        _change(0, 0, safe=True),
        _change(1, 1, safe=True, reason="PROCESS_RESTART"),
        _change(2, 2, safe=True, reason="LATENCY_TOO_HIGH"),
        _change(3, 5, safe=False),
        _change(4, 6, safe=False),
        _change(5, 9, safe=True, reason="MAINTENANCE"),
    ]
    found = [(i.reason, i.from_version, i.to_version, i.end) for i in blocked_intervals(changes)]
    assert found == [("PROCESS_RESTART", 0, 2, _at(5)), ("MAINTENANCE", 5, 5, None)]


def test_versions_order_the_changes_not_their_order_in_the_list():
    changes = [_change(2, 30, safe=False), _change(0, 0, safe=False), _change(1, 10, safe=True, reason="X")]
    assert [(i.start, i.end) for i in blocked_intervals(changes)] == [(_at(10), _at(30))]


def test_an_interval_already_on_at_since_starts_at_since_from_the_version_in_force():
    changes = [_change(0, 0, safe=False), _change(1, 10, safe=True, reason="A"), _change(2, 20, safe=True,
                                                                                         reason="B"),
               _change(3, 40, safe=False), _change(4, 50, safe=True, reason="C")]
    found = blocked_intervals(changes, since=_at(25))
    assert [(i.start, i.end, i.from_version, i.to_version, i.reason) for i in found] == [
        (_at(25), _at(40), 2, 2, "B"), (_at(50), None, 4, 4, "C")]


def test_a_change_exactly_at_since_is_the_one_in_force():
    changes = [_change(0, 0, safe=True, reason="A"), _change(1, 10, safe=False)]
    assert blocked_intervals(changes, since=_at(10)) == []
    assert in_window(changes, since=_at(10)) == [changes[1]]


def test_since_after_an_unblocked_state_clips_nothing():
    changes = [_change(0, 0, safe=False), _change(1, 30, safe=True, reason="A"), _change(2, 40, safe=False)]
    assert [(i.start, i.end) for i in blocked_intervals(changes, since=_at(20))] == [(_at(30), _at(40))]


def test_changes_after_until_are_left_out_so_an_interval_lifted_later_is_still_on():
    changes = [_change(0, 0, safe=False), _change(1, 10, safe=True, reason="A"), _change(2, 40, safe=False)]
    [interval] = blocked_intervals(changes, until=_at(39))
    assert (interval.start, interval.end) == (_at(10), None)
    assert blocked_intervals(changes, since=_at(41), until=_at(50)) == []


def test_a_window_ending_before_it_starts_is_empty():
    changes = [_change(0, 0, safe=True, reason="A")]
    assert blocked_intervals(changes, since=_at(20), until=_at(10)) == []
    assert in_window(changes, since=_at(20), until=_at(10)) == []


def test_an_interval_reads_as_the_api_writes_it():
    interval = BlockedInterval(start=_at(0.1234), end=None, reason="A", from_version=3, to_version=4, halted=False)
    assert interval.to_dict() == {"start": "2025-11-18T15:20:00.123Z", "end": None, "reason": "A",
                                  "fromVersion": 3, "toVersion": 4, "halted": False, "operatorHalt": False}


def test_a_change_reads_from_an_api_item():
    item = {"version": 7, "at": "2025-11-18T15:20:10.000Z", "safeMode": False, "reason": None,
            "tradingEnabled": False, "planned": False}
    assert StateChange.from_dict(item) == _change(7, 10, safe=False, trading=False)


@pytest.mark.parametrize(
    ("item", "path"),
    [
        ({"version": 1, "at": "2025-11-18T15:20:10", "safeMode": True, "tradingEnabled": True}, "at"),
        ({"version": "1", "at": "2025-11-18T15:20:10Z", "safeMode": True, "tradingEnabled": True}, "version"),
        ({"version": 1, "at": "2025-11-18T15:20:10Z", "safeMode": 1, "tradingEnabled": True}, "safeMode"),
        ({"version": 1, "at": "2025-11-18T15:20:10Z", "safeMode": True}, "tradingEnabled"),
    ],
)
def test_a_bad_api_item_is_refused_naming_its_field(item: dict[str, Any], path: str):
    with pytest.raises(SchemaError) as refused:
        StateChange.from_dict(item)
    assert refused.value.path == path


# -- the copy of every version -------------------------------------------------------------------------------


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    """The service clock, held at T0 until a test moves it."""
    held = ManualClock(to_epoch_ms(T0))
    monkeypatch.setattr(records, "CLOCK", held)
    return held


@pytest.fixture
def run_id() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def _report(run_id: str, failure_type: str = "EXCHANGE_UNAVAILABLE") -> None:
    services.failure_report(event=FailureEvent(timestamp=records.now(), type=failure_type, source="EXECUTION_ENGINE",
                                               message="test"), run_id=run_id)


def _assert_history_matches_state(run_id: str) -> None:
    row = FailoverStateRecord.objects.get(run_id=run_id)
    last = FailoverStateChange.objects.filter(run_id=run_id).order_by("version").last()
    assert last is not None
    copied = ("version", "safe_mode", "reason", "planned", "operator_hold", "trading_enabled", "recovery_in_progress",
              "active_failures", "current_plan_id")
    assert {f: getattr(last, f) for f in copied} == {f: getattr(row, f) for f in copied}
    assert last.at == row.updated_at


@pytest.mark.django_db
def test_the_first_read_records_version_zero_safe_mode_on(clock, run_id):
    services.failover_state_get(run_id=run_id)
    assert selectors.failover_state_history(run_id=run_id) == [{
        "version": 0, "at": "2025-11-18T15:20:00.000Z", "safeMode": True, "reason": None, "planned": False,
        "operatorHold": False, "tradingEnabled": True, "recoveryInProgress": False, "activeFailures": [],
        "currentPlanId": None, "halted": False, "haltReason": None}]
    services.failover_state_get(run_id=run_id)  # a second read changes nothing
    assert FailoverStateChange.objects.filter(run_id=run_id).count() == 1


def test_an_operators_halt_blocks_entries_on_its_own_and_names_itself():
    changes = [_change(0, 0, safe=False), StateChange(1, _at(10), False, True, None, halted=True),
               StateChange(2, _at(20), True, True, "LATENCY_TOO_HIGH", halted=True), _change(3, 30, safe=False)]
    [interval] = blocked_intervals(changes)
    assert interval == BlockedInterval(start=_at(10), end=_at(30), reason="HALT", from_version=1, to_version=2,
                                       halted=False, operator_halt=True)
    assert not _change(0, 0, safe=False, reason="stale").blocked  # a stale reason alone blocks nothing
    assert StateChange(4, _at(40), False, True, "stale reason", halted=True).blocked_by == "HALT"


def test_a_history_item_without_halted_is_not_halted_and_a_bad_one_is_refused():
    item = {"version": 7, "at": "2025-11-18T15:20:10.000Z", "safeMode": False, "reason": None,
            "tradingEnabled": True}
    assert StateChange.from_dict(item).halted is False
    assert StateChange.from_dict({**item, "halted": True}).blocked
    with pytest.raises(SchemaError):
        StateChange.from_dict({**item, "halted": "yes"})


@pytest.mark.django_db
def test_every_version_is_in_the_history_as_the_state_had_it(clock, run_id, captured_chains):
    services.safe_mode_enter(run_id=run_id, reason="MAINTENANCE", user="ops")
    _assert_history_matches_state(run_id)
    clock.advance(1000)
    services.safe_mode_exit(run_id=run_id, user="ops")
    _assert_history_matches_state(run_id)
    clock.advance(1000)
    _report(run_id)  # safe mode was off: the gate's one-statement version, then the report's own
    _assert_history_matches_state(run_id)
    clock.advance(1000)
    services.safe_mode_exit(run_id=run_id, user="ops", force=True)
    _assert_history_matches_state(run_id)
    items = selectors.failover_state_history(run_id=run_id)
    state = FailoverStateRecord.objects.get(run_id=run_id)
    assert [i["version"] for i in items] == list(range(state.version + 1))
    assert [(i["safeMode"], i["reason"]) for i in items] == [
        (True, None), (True, "MAINTENANCE"), (False, None), (True, "EXCHANGE_UNAVAILABLE"),
        (True, "EXCHANGE_UNAVAILABLE"), (False, None)]
    assert items[4]["activeFailures"] == ["EXCHANGE_UNAVAILABLE"] and items[4]["currentPlanId"] is not None
    assert items[4]["recoveryInProgress"] is True and items[1]["operatorHold"] is True


@pytest.mark.django_db
def test_a_rolled_back_change_leaves_no_version_in_the_history(clock, run_id):
    services.failover_state_get(run_id=run_id)
    with pytest.raises(RuntimeError), transaction.atomic():
        row = records.state_lock(run_id)
        row.safe_mode = False
        records.state_commit(row)
        raise RuntimeError("the caller failed after the commit call")
    assert list(FailoverStateChange.objects.filter(run_id=run_id).values_list("version", flat=True)) == [0]
    assert FailoverStateRecord.objects.get(run_id=run_id).version == 0


@pytest.mark.django_db
def test_a_state_row_created_again_starts_a_new_history(clock, run_id):
    services.safe_mode_enter(run_id=run_id, reason="MAINTENANCE", user="ops")
    FailoverStateRecord.objects.filter(run_id=run_id).delete()
    services.failover_state_get(run_id=run_id)  # version 0 again: the old history must not collide with it
    assert list(FailoverStateChange.objects.filter(run_id=run_id).values_list("version", "reason")) == [(0, None)]


@pytest.mark.django_db
def test_the_migration_starts_each_history_at_the_current_version(clock, run_id):
    services.safe_mode_enter(run_id=run_id, reason="MAINTENANCE", user="ops")
    FailoverStateChange.objects.all().delete()  # as before the migration: no history
    migration = importlib.import_module("failover.migrations.0003_state_history")
    migration.record_current_versions(django_apps, None)
    [change] = FailoverStateChange.objects.filter(run_id=run_id)
    assert (change.version, change.reason, change.safe_mode, change.operator_hold) == (1, "MAINTENANCE", True, True)


# -- the reads -----------------------------------------------------------------------------------------------


def _script(run_id: str, clock: ManualClock) -> None:
    """v0 ON at T0, v1 OFF at +10 s, v2 ON (MAINTENANCE) at +20 s, v3 OFF at +30 s, v4 ON (LATENCY) at +40 s."""
    services.failover_state_get(run_id=run_id)
    clock.advance(10_000)
    services.safe_mode_exit(run_id=run_id, user="ops")
    clock.advance(10_000)
    services.safe_mode_enter(run_id=run_id, reason="MAINTENANCE", user="ops")
    clock.advance(10_000)
    services.safe_mode_exit(run_id=run_id, user="ops")
    clock.advance(10_000)
    services.safe_mode_enter(run_id=run_id, reason="LATENCY_TOO_HIGH", user="ops", planned=False)


@pytest.mark.django_db
def test_history_reads_a_window_oldest_first_and_stops_at_the_limit(clock, run_id):
    _script(run_id, clock)
    assert [i["version"] for i in selectors.failover_state_history(run_id=run_id, since=_at(10), until=_at(30))] == [
        1, 2, 3]
    assert [i["version"] for i in selectors.failover_state_history(run_id=run_id, limit=2)] == [0, 1]
    assert selectors.failover_state_history(run_id="another-run") == []
    with pytest.raises(ValueError):
        selectors.failover_state_history(run_id=run_id, limit=0)


@pytest.mark.django_db
def test_a_halt_and_its_resume_are_in_the_history_and_its_intervals(clock, run_id):
    services.failover_state_get(run_id=run_id)
    clock.advance(10_000)
    services.safe_mode_exit(run_id=run_id, user="ops")
    clock.advance(10_000)
    services.trading_halt(run_id=run_id, reason="exchange maintenance", user="ops")
    clock.advance(10_000)
    services.trading_resume(run_id=run_id, user="ops")

    items = selectors.failover_state_history(run_id=run_id)
    assert [(i["version"], i["safeMode"], i["halted"], i["haltReason"]) for i in items] == [
        (0, True, False, None), (1, False, False, None), (2, False, True, "exchange maintenance"),
        (3, False, False, None)]
    assert selectors.safe_mode_intervals(run_id=run_id)[-1] == {
        "start": "2025-11-18T15:20:20.000Z", "end": "2025-11-18T15:20:30.000Z", "reason": "HALT",
        "fromVersion": 2, "toVersion": 2, "halted": False, "operatorHalt": True}


@pytest.mark.django_db
def test_intervals_from_the_database(clock, run_id):
    _script(run_id, clock)
    assert selectors.safe_mode_intervals(run_id=run_id) == [
        {"start": "2025-11-18T15:20:00.000Z", "end": "2025-11-18T15:20:10.000Z", "reason": None,
         "fromVersion": 0, "toVersion": 0, "halted": False, "operatorHalt": False},
        {"start": "2025-11-18T15:20:20.000Z", "end": "2025-11-18T15:20:30.000Z", "reason": "MAINTENANCE",
         "fromVersion": 2, "toVersion": 2, "halted": False, "operatorHalt": False},
        {"start": "2025-11-18T15:20:40.000Z", "end": None, "reason": "LATENCY_TOO_HIGH",
         "fromVersion": 4, "toVersion": 4, "halted": False, "operatorHalt": False},
    ]
    # A window opening inside the MAINTENANCE interval and closing before the last one.
    assert [(i["start"], i["end"], i["fromVersion"]) for i in
            selectors.safe_mode_intervals(run_id=run_id, since=_at(25), until=_at(35))] == [
        ("2025-11-18T15:20:25.000Z", "2025-11-18T15:20:30.000Z", 2)]


@pytest.mark.django_db
def test_an_offline_checker_gets_the_same_intervals_from_the_items(clock, run_id):
    _script(run_id, clock)
    changes = [StateChange.from_dict(item) for item in selectors.failover_state_history(run_id=run_id)]
    offline = [interval.to_dict() for interval in blocked_intervals(changes, since=_at(5))]
    assert offline == selectors.safe_mode_intervals(run_id=run_id, since=_at(5))


# -- retention -----------------------------------------------------------------------------------------------


def _versions(run_id: str) -> list[int]:
    return list(FailoverStateChange.objects.filter(run_id=run_id).order_by("version").values_list("version",
                                                                                                  flat=True))


@pytest.mark.django_db
def test_prune_keeps_the_state_in_force_at_the_cutoff_and_what_came_after(clock, run_id, settings):
    _script("", clock)  # the product: v0..v4 at T0 .. T0+40 s
    _script(run_id, clock)  # a run whose last change is recent
    clock.advance(86_400_000 - 55_000)  # now - one day = T0 + 25 s: between v2 and v3 of the product
    settings.SCALPER_FAILOVER_HISTORY_DAYS = 1
    assert prune_state_history.delay().get() == {"orphaned": 0, "expired": 2, "finishedRuns": 0}
    assert _versions("") == [2, 3, 4]
    assert _versions(run_id) == list(range(5))  # all its changes are younger than a day
    intervals = selectors.safe_mode_intervals(run_id="", since=records.now() - timedelta(days=1))
    assert [i["reason"] for i in intervals] == ["MAINTENANCE", "LATENCY_TOO_HIGH"]
    assert prune_state_history.delay().get() == {"orphaned": 0, "expired": 0, "finishedRuns": 0}  # idempotent


@pytest.mark.django_db
def test_prune_deletes_finished_runs_whole_and_histories_without_a_state(clock, run_id):
    _script("", clock)
    _script(run_id, clock)
    gone = f"t-{uuid.uuid4().hex[:8]}"
    services.safe_mode_enter(run_id=gone, reason="MAINTENANCE", user="ops")
    FailoverStateRecord.objects.filter(run_id=gone).delete()
    clock.advance(3 * 86_400_000)
    pruned = history.state_history_prune(days=2, now=records.now())
    assert pruned == {"orphaned": 2, "expired": 4, "finishedRuns": 5}
    assert _versions("") == [4]  # the product always keeps the state in force
    assert _versions(run_id) == [] and _versions(gone) == []
    with pytest.raises(ValueError):
        history.state_history_prune(days=0, now=records.now())


# -- the admin -----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_lists_the_history_read_only(clock, run_id):
    services.safe_mode_enter(run_id=run_id, reason="MAINTENANCE", user="ops")
    admin_user = get_user_model().objects.create_superuser("root", password="pw-123456-x")
    client = Client()
    client.force_login(admin_user)
    page = client.get("/admin/failover/failoverstatechange/", {"run_id": run_id})
    assert page.status_code == 200 and b"MAINTENANCE" in page.content
    model_admin = FailoverStateChangeAdmin(FailoverStateChange, None)
    request = page.wsgi_request
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request) and not model_admin.has_delete_permission(request)
    change = FailoverStateChange.objects.filter(run_id=run_id).first()
    assert client.post(f"/admin/failover/failoverstatechange/{change.pk}/delete/", {"post": "yes"}).status_code == 403


@pytest.mark.services
@pytest.mark.django_db
def test_every_version_is_in_the_history_on_postgresql(clock, run_id, captured_chains):
    from django.db import connection

    assert connection.vendor == "postgresql"
    services.failover_state_get(run_id=run_id)
    clock.advance(1000)
    services.safe_mode_exit(run_id=run_id, user="ops")
    clock.advance(1000)
    _report(run_id)  # the gate's plain-SQL version, then the report's: jsonb and bigint copied as they are
    _assert_history_matches_state(run_id)
    assert _versions(run_id) == [0, 1, 2, 3]
    assert [(i["fromVersion"], i["toVersion"], i["end"]) for i in selectors.safe_mode_intervals(run_id=run_id)] == [
        (0, 0, "2025-11-18T15:20:01.000Z"), (2, 3, None)]
