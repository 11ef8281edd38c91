"""The status snapshot: reused while the database holds its version, never older than the database, bounded in age."""

from __future__ import annotations

from typing import Any

import pytest
from django.db.models import F

from failover import services
from failover.models import FailoverStateRecord
from failover.status_snapshot import StatusSnapshots, status_row_key

pytestmark = pytest.mark.django_db


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _snapshots(max_age_s: float = 1.0, render: Any = dict) -> tuple[StatusSnapshots, Ticks]:
    ticks = Ticks()
    return StatusSnapshots(render=render, max_age_s=max_age_s, clock=ticks), ticks


def _without_timestamp(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "timestamp"}


def test_snapshot_first_read_creates_the_state_fail_closed_and_matches_the_uncached_body():
    snapshots, _ = _snapshots()
    body = snapshots.body()
    assert body["safeMode"] is True and body["currentPlan"] is None
    assert _without_timestamp(body) == _without_timestamp(services.failover_status())
    assert status_row_key() is not None


def test_snapshot_is_reused_while_the_database_holds_its_version():
    snapshots, _ = _snapshots()
    first = snapshots.body()
    second = snapshots.body()
    assert snapshots.builds == 1
    assert _without_timestamp(first) == _without_timestamp(second)
    second["safeMode"] = "changed by a caller"
    assert snapshots.body()["safeMode"] is True  # each answer is a copy: a caller cannot change the snapshot


def test_snapshot_never_serves_a_version_older_than_the_database_even_unannounced():
    snapshots, _ = _snapshots(max_age_s=3600)  # the age bound is not what makes it fresh
    assert snapshots.body()["safeMode"] is True
    services.safe_mode_exit(user="test", force=True)  # a committed change (its bus notification goes nowhere here)
    assert snapshots.body()["safeMode"] is False
    # A change no one announces, made the way any writer makes one: a new version.
    row = FailoverStateRecord.objects.filter(run_id="")
    row.update(safe_mode=True, reason="MODULE_CRASH", version=F("version") + 1)
    body = snapshots.body()
    assert body["safeMode"] is True and body["reason"] == "MODULE_CRASH"
    assert _without_timestamp(body) == _without_timestamp(services.failover_status())
    assert snapshots.builds == 3


def test_snapshot_older_than_its_bound_is_rebuilt_for_a_change_without_a_version():
    snapshots, ticks = _snapshots(max_age_s=1.0)
    assert snapshots.body()["reason"] is None
    FailoverStateRecord.objects.filter(run_id="").update(reason="CONFIG_INVALID")  # same version, same updated_at
    ticks.now += 0.5
    assert snapshots.body()["reason"] is None  # within the bound: the snapshot stands
    ticks.now += 0.6
    assert snapshots.body()["reason"] == "CONFIG_INVALID"
    assert snapshots.builds == 2


def test_snapshot_a_commit_during_a_build_is_never_hidden():
    committed: list[int] = []

    def render_while_a_writer_commits(body: dict[str, Any]) -> dict[str, Any]:
        if not committed:  # the first build: the database moves on after the row was read for the snapshot
            committed.append(1)
            FailoverStateRecord.objects.filter(run_id="").update(reason="LATENCY_TOO_HIGH", version=F("version") + 1)
        return dict(body)

    snapshots, _ = _snapshots(max_age_s=3600, render=render_while_a_writer_commits)
    assert snapshots.body()["reason"] is None  # the version read before the change
    assert snapshots.body()["reason"] == "LATENCY_TOO_HIGH"  # the next answer already has it
    assert snapshots.builds == 2


def test_snapshot_of_a_row_created_again_is_not_the_old_rows():
    snapshots, _ = _snapshots(max_age_s=3600)
    snapshots.body(run_id="again")
    FailoverStateRecord.objects.filter(run_id="again").update(safe_mode=False, reason=None)
    FailoverStateRecord.objects.filter(run_id="again").delete()
    body = snapshots.body(run_id="again")  # created anew, fail closed: version 0 again, a new identity
    assert body["safeMode"] is True and snapshots.builds == 2


def test_snapshots_of_environments_are_kept_apart():
    snapshots, _ = _snapshots()
    services.safe_mode_exit(run_id="other", user="test", force=True)
    assert snapshots.body(run_id="other")["safeMode"] is False
    assert snapshots.body()["safeMode"] is True


@pytest.mark.django_db(transaction=True)  # the pushes are sent on commit
def test_a_failure_report_pushes_the_badge_at_its_first_commit_before_the_plan_is_built(monkeypatch):
    from datetime import UTC, datetime

    from failover.domain.types import FailureEvent
    from failover.recovery import records, runner

    monkeypatch.setattr(runner, "_send_chain", lambda plan_pk, token, pks: None)
    services.safe_mode_exit(user="test", force=True)
    before = FailoverStateRecord.objects.get(run_id="").version
    seen: list[tuple[str, Any]] = []
    push, plan_save = records.push_failover_message, records.plan_save

    def recording_push(*, kind: str, payload: dict[str, Any], version: int | None = None) -> None:
        seen.append((kind, (payload["safeMode"], payload["reason"], version)))
        push(kind=kind, payload=payload, version=version)

    def recording_plan_save(*args: Any, **kwargs: Any) -> Any:
        seen.append(("plan", None))
        return plan_save(*args, **kwargs)

    def recording_flush(timeout_s: float) -> bool:
        seen.append(("flush", timeout_s))
        return True

    monkeypatch.setattr(records, "push_failover_message", recording_push)
    monkeypatch.setattr(records, "plan_save", recording_plan_save)
    monkeypatch.setattr(records, "flush_pushes", recording_flush)
    services.failure_report(event=FailureEvent(timestamp=datetime.now(UTC), type="EXCHANGE_UNAVAILABLE",
                                               source="EXECUTION_ENGINE", message="test"))
    assert seen == [
        ("failover.status", (True, "EXCHANGE_UNAVAILABLE", before + 1)),  # the gate's commit: safe mode ON
        ("flush", records.BADGE_FLUSH_S),  # sent before the plan's work takes the interpreter
        ("plan", None),
        ("failover.status", (True, "EXCHANGE_UNAVAILABLE", before + 2)),  # the report's own commit
    ]


@pytest.mark.django_db(transaction=True)
def test_a_failing_badge_push_never_stops_the_report(monkeypatch):
    from datetime import UTC, datetime

    from failover.domain.types import FailureEvent
    from failover.recovery import records, runner

    monkeypatch.setattr(runner, "_send_chain", lambda plan_pk, token, pks: None)
    services.safe_mode_exit(user="test", force=True)

    def broken_state_domain(row: Any) -> Any:
        raise RuntimeError("database gone mid-read")

    with monkeypatch.context() as broken:
        broken.setattr(records, "state_domain", broken_state_domain)
        records._push_committed_state("")  # logged, not raised
    calls = {"n": 0}
    state_domain = records.state_domain

    def failing_once(row: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("database gone mid-read")
        return state_domain(row)

    monkeypatch.setattr(records, "state_domain", failing_once)
    state = services.failure_report(event=FailureEvent(timestamp=datetime.now(UTC), type="EXCHANGE_UNAVAILABLE",
                                                       source="EXECUTION_ENGINE", message="test"))
    assert calls["n"] >= 2  # the gate's push failed; the report went on and built its plan
    assert state.safe_mode is True and state.current_plan is not None
