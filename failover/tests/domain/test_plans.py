"""The failure -> steps table, plan generation, and the merge rule."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from failover.domain.plans import (
    MINIMAL_RESTART,
    PLAN_TABLE,
    STEP_ORDER,
    fail_step,
    finish_step,
    generate_plan,
    merge_plan,
    render_plan_table,
    start_step,
)
from failover.domain.types import FailureType, PlanStatus, RecoveryPlan, StepStatus, StepType
from failover.tests.domain.kit import T0, FakeClock, event, order, position, process_state

S = StepType
SYMBOLS = ["BTCUSDT", "AI16ZUSDT"]
README = Path(__file__).resolve().parents[2] / "domain" / "README.md"


def _types(plan: RecoveryPlan) -> list[StepType]:
    return [s.type for s in plan.pending_steps]


def _run(plan: RecoveryPlan, clock: FakeClock, count: int) -> RecoveryPlan:
    for _ in range(count):
        step = plan.pending_steps[0]
        plan = start_step(plan, step.id, at=clock.now())
        plan = finish_step(plan, step.id, at=clock.now())
    return plan


def test_every_failure_type_has_a_row():
    assert set(PLAN_TABLE) == set(FailureType)
    for rule in PLAN_TABLE.values():
        assert rule.steps and rule.why


@pytest.mark.parametrize("failure_type", list(FailureType))
def test_generated_plan_follows_the_table_in_canonical_order(failure_type):
    plan = generate_plan(event(failure_type), clock=FakeClock(), symbols=SYMBOLS)
    assert _types(plan) == sorted(PLAN_TABLE[failure_type].steps, key=STEP_ORDER.index)
    assert [s.id for s in plan.pending_steps] == [f"step-{i:03d}" for i in range(1, len(plan.pending_steps) + 1)]
    assert all(s.status is StepStatus.PENDING and s.created_at == T0 for s in plan.pending_steps)
    assert plan.failure_type is failure_type and plan.status is PlanStatus.RUNNING
    assert RecoveryPlan.from_dict(plan.to_dict()) == plan


@pytest.mark.parametrize(
    ("failure_type", "expected"),
    [
        # The spec's own examples (4.2 and 5.3).
        (FailureType.NON_SYNC_STATE, [S.RESYNC_POSITIONS, S.RESYNC_ORDERS, S.CLEAR_LOCAL_STATE]),
        (FailureType.PROCESS_RESTART, [S.READ_PROCESS_STATE, S.RESYNC_POSITIONS, S.RESYNC_ORDERS]),
        (FailureType.PRIVATE_WS_DISCONNECTED, [S.RESYNC_EXCHANGE_CONNECTION, S.RESYNC_POSITIONS, S.RESYNC_ORDERS]),
        (FailureType.CONFIG_INVALID, [S.DISABLE_TRADING, S.RESYNC_CONFIG]),
    ],
)
def test_spec_examples_produce_the_spec_steps(failure_type, expected):
    plan = generate_plan(event(failure_type), clock=FakeClock(), symbols=SYMBOLS)
    assert _types(plan) == expected
    assert plan.pending_steps[-1].details["symbols"] == SYMBOLS


def test_restart_with_nothing_open_gets_the_minimal_plan():
    previous = process_state(phase="STOPPING")
    plan = generate_plan(event("PROCESS_RESTART"), clock=FakeClock(), symbols=SYMBOLS, previous_state=previous)
    assert _types(plan) == list(MINIMAL_RESTART.steps)
    assert S.RESYNC_POSITIONS not in _types(plan)


def test_restart_with_an_open_order_resyncs_positions_too():
    previous = process_state(phase="STOPPING", orders=(order(),))
    plan = generate_plan(event("PROCESS_RESTART"), clock=FakeClock(), symbols=SYMBOLS, previous_state=previous)
    assert S.RESYNC_POSITIONS in _types(plan)


def test_unexpected_shutdown_resyncs_everything_even_with_an_empty_snapshot():
    plan = generate_plan(event("UNEXPECTED_SHUTDOWN"), clock=FakeClock(), symbols=SYMBOLS,
                         previous_state=process_state())
    assert _types(plan) == [S.READ_PROCESS_STATE, S.RESYNC_POSITIONS, S.RESYNC_ORDERS, S.CLEAR_LOCAL_STATE]


def test_resync_covers_symbols_from_the_previous_snapshot():
    previous = process_state(symbols=("BTCUSDT",), positions=(position("SOLUSDT"),), orders=(order(symbol="XRPUSDT"),))
    plan = generate_plan(event("UNEXPECTED_SHUTDOWN"), clock=FakeClock(), symbols=["BTCUSDT"],
                         previous_state=previous)
    resync = next(s for s in plan.pending_steps if s.type is S.RESYNC_POSITIONS)
    assert resync.details["symbols"] == ["BTCUSDT", "SOLUSDT", "XRPUSDT"]


def test_public_ws_degraded_plan_names_only_the_affected_symbols():
    failure = event("PUBLIC_WS_DEGRADED", details={"symbols": ["AI16ZUSDT"]})
    plan = generate_plan(failure, clock=FakeClock(), symbols=SYMBOLS)
    assert [s.details["symbols"] for s in plan.pending_steps] == [["AI16ZUSDT"], ["AI16ZUSDT"]]
    assert plan.pending_steps[0].details["connections"] == ["publicWs"]


def test_merge_without_a_plan_generates_one():
    plan = merge_plan(None, event("PACKET_LOSS"), clock=FakeClock(), symbols=SYMBOLS)
    assert plan.failure_type is FailureType.PACKET_LOSS and plan.supersedes is None


def test_merge_after_a_done_plan_starts_a_new_plan_with_a_new_id():
    clock = FakeClock()
    done = _run(generate_plan(event("CONFIG_INVALID"), clock=clock, symbols=SYMBOLS), clock, 2)
    assert done.status is PlanStatus.DONE
    fresh = merge_plan(done, event("PACKET_LOSS"), clock=clock, symbols=SYMBOLS)
    assert fresh.plan_id != done.plan_id and fresh.supersedes is None
    assert fresh.completed_steps == ()


def test_merge_during_recovery_adds_missing_steps_without_duplicate_pending():
    clock = FakeClock()
    plan = generate_plan(event("PRIVATE_WS_DISCONNECTED"), clock=clock, symbols=SYMBOLS)
    clock.advance(1)
    merged = merge_plan(plan, event("NON_SYNC_STATE"), clock=clock, symbols=SYMBOLS)
    assert merged.plan_id == plan.plan_id and merged.supersedes is None
    assert _types(merged) == [S.RESYNC_EXCHANGE_CONNECTION, S.RESYNC_POSITIONS, S.RESYNC_ORDERS, S.CLEAR_LOCAL_STATE]
    assert [s.id for s in merged.pending_steps] == ["step-001", "step-002", "step-003", "step-004"]
    assert merged.merged_failure_types == (FailureType.NON_SYNC_STATE,)
    assert merged.last_generated_at == clock.now()


def test_merge_redoes_done_and_running_steps_the_new_failure_needs():
    clock = FakeClock()
    plan = _run(generate_plan(event("PRIVATE_WS_DISCONNECTED"), clock=clock, symbols=SYMBOLS), clock, 1)
    plan = start_step(plan, "step-002", at=clock.now())  # RESYNC_POSITIONS running when the exchange goes away
    clock.advance(2)
    merged = merge_plan(plan, event("EXCHANGE_UNAVAILABLE"), clock=clock, symbols=SYMBOLS)
    assert [(s.id, s.type, s.status) for s in merged.pending_steps] == [
        ("step-002", S.RESYNC_POSITIONS, StepStatus.RUNNING),  # left to finish
        ("step-004", S.RESYNC_EXCHANGE_CONNECTION, StepStatus.PENDING),  # DONE before the failure: redone
        ("step-005", S.RESYNC_POSITIONS, StepStatus.PENDING),  # running since before the failure: redone
        ("step-003", S.RESYNC_ORDERS, StepStatus.PENDING),  # still waiting: not duplicated
    ]
    assert [s.id for s in merged.completed_steps] == ["step-001"]
    pending_types = [s.type for s in merged.pending_steps if s.status is StepStatus.PENDING]
    assert len(pending_types) == len(set(pending_types))


def test_merge_widens_a_waiting_step_to_the_new_symbols():
    clock = FakeClock()
    plan = generate_plan(event("PUBLIC_WS_DEGRADED", details={"symbols": ["BTCUSDT"]}), clock=clock, symbols=SYMBOLS)
    merged = merge_plan(plan, event("PUBLIC_WS_DEGRADED", details={"symbols": ["ETHUSDT"]}), clock=clock,
                        symbols=SYMBOLS)
    assert [s.details["symbols"] for s in merged.pending_steps] == [["BTCUSDT", "ETHUSDT"]] * 2
    assert merged.symbols == ("BTCUSDT", "ETHUSDT")
    assert merged.merged_failure_types == ()  # the same failure type again adds nothing to the list


def test_a_failed_plan_is_superseded_and_keeps_its_unfinished_steps():
    clock = FakeClock()
    plan = _run(generate_plan(event("PRIVATE_WS_DISCONNECTED"), clock=clock, symbols=SYMBOLS), clock, 1)
    plan = start_step(plan, "step-002", at=clock.now())
    plan = fail_step(plan, "step-002", "positions endpoint 503", at=clock.now())
    assert plan.status is PlanStatus.FAILED
    clock.advance(1)
    new = merge_plan(plan, event("CONFIG_INVALID"), clock=clock, symbols=SYMBOLS)
    assert new.plan_id != plan.plan_id and new.supersedes == plan.plan_id
    assert _types(new) == [S.DISABLE_TRADING, S.RESYNC_CONFIG, S.RESYNC_POSITIONS, S.RESYNC_ORDERS]
    assert all(s.status is StepStatus.PENDING for s in new.pending_steps) and new.completed_steps == ()
    assert new.failure_type is FailureType.CONFIG_INVALID
    assert new.merged_failure_types == (FailureType.PRIVATE_WS_DISCONNECTED,)


def test_a_restart_supersedes_the_dead_process_plan():
    clock = FakeClock()
    plan = generate_plan(event("PRIVATE_WS_DISCONNECTED"), clock=clock, symbols=SYMBOLS)
    plan = start_step(plan, "step-001", at=clock.now())  # the process died while this ran
    new = merge_plan(plan, event("UNEXPECTED_SHUTDOWN"), clock=clock, symbols=SYMBOLS,
                     previous_state=process_state())
    assert new.supersedes == plan.plan_id and new.plan_id != plan.plan_id  # same millisecond, still distinct
    assert _types(new) == [S.READ_PROCESS_STATE, S.RESYNC_EXCHANGE_CONNECTION, S.RESYNC_POSITIONS,
                           S.RESYNC_ORDERS, S.CLEAR_LOCAL_STATE]
    connection = next(s for s in new.pending_steps if s.type is S.RESYNC_EXCHANGE_CONNECTION)
    assert connection.details["connections"] == ["privateWs"]


def test_plan_ids_are_deterministic_from_the_clock():
    plan = generate_plan(event("PACKET_LOSS"), clock=FakeClock(), symbols=SYMBOLS)
    assert plan.plan_id == "plan-20251118-152000-000"
    assert generate_plan(event("PACKET_LOSS"), clock=FakeClock(), symbols=SYMBOLS, plan_id="p-7").plan_id == "p-7"


def test_readme_table_matches_the_code():
    text = README.read_text(encoding="utf-8")
    found = re.search(r"<!-- plan-table:start -->\n(.*?)<!-- plan-table:end -->", text, re.S)
    assert found, "README.md lost its plan-table markers"
    assert found.group(1) == render_plan_table(), "regenerate the table: python -m failover.domain.plans"
