"""The spec's JSON shapes: exact round trips of its example documents, and clear refusals of bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from failover.domain.types import (
    FailoverState,
    FailureEvent,
    FailureSource,
    FailureType,
    OrderSnapshot,
    PlanStatus,
    PositionSnapshot,
    ProcessState,
    RecoveryPlan,
    RecoveryStep,
    SchemaError,
    StepStatus,
    StepType,
)
from failover.tests.domain.kit import T0, event, order, position

# Spec 3.1, with one value picked where the spec lists alternatives.
SPEC_FAILURE_EVENT = """{
  "timestamp": "2025-11-18T15:19:55.000Z",
  "type": "PRIVATE_WS_DISCONNECTED",
  "source": "EXECUTION_ENGINE",
  "message": "Private WS disconnected",
  "details": {"reconnectAttempts": 3}
}"""

SPEC_POSITION = """{
  "symbol": "BTCUSDT",
  "side": "LONG",
  "entryPrice": 91234.5,
  "qty": 0.01,
  "leverage": 5,
  "pnlUnrealized": 1.23,
  "exchangePositionId": "123456789"
}"""

SPEC_ORDER = """{
  "symbol": "BTCUSDT",
  "side": "BUY",
  "clientOrderId": "AISCLP-20251118-0001",
  "exchangeOrderId": "abcd-1234",
  "price": 91234.5,
  "qty": 0.01,
  "status": "NEW"
}"""

SPEC_PROCESS_STATE = f"""{{
  "lastUpdate": "2025-11-18T15:20:30.000Z",
  "pid": 12345,
  "runMode": "SIM",
  "phase": "RUNNING",
  "activeSymbols": ["BTCUSDT", "AI16ZUSDT"],
  "openPositionsSnapshot": [{SPEC_POSITION}],
  "openOrdersSnapshot": [{SPEC_ORDER}],
  "lastRecoveryAt": "2025-11-18T15:19:00.000Z",
  "lastFailure": {SPEC_FAILURE_EVENT}
}}"""

# Spec 4.1.
SPEC_STEP = """{
  "id": "step-001",
  "type": "RESYNC_POSITIONS",
  "status": "DONE",
  "createdAt": "2025-11-18T15:20:00.000Z",
  "startedAt": "2025-11-18T15:20:05.000Z",
  "finishedAt": "2025-11-18T15:20:10.000Z",
  "details": {"symbols": ["BTCUSDT", "AI16ZUSDT"]},
  "errorMessage": null
}"""

SPEC_PENDING_STEP = """{
  "id": "step-002",
  "type": "RESYNC_ORDERS",
  "status": "PENDING",
  "createdAt": "2025-11-18T15:20:00.000Z",
  "startedAt": null,
  "finishedAt": null,
  "details": {"symbols": ["BTCUSDT", "AI16ZUSDT"]},
  "errorMessage": null
}"""

SPEC_PLAN = f"""{{
  "lastGeneratedAt": "2025-11-18T15:19:59.000Z",
  "pendingSteps": [{SPEC_PENDING_STEP}],
  "completedSteps": [{SPEC_STEP}]
}}"""

# Spec 5.1.
SPEC_FAILOVER_STATE = f"""{{
  "safeMode": true,
  "reason": "EXCHANGE_UNAVAILABLE",
  "since": "2025-11-18T15:19:55.000Z",
  "lastFailure": {SPEC_FAILURE_EVENT},
  "recoveryInProgress": true,
  "currentPlan": {SPEC_PLAN}
}}"""


def _canonical(text: str) -> str:
    return json.dumps(json.loads(text), sort_keys=True)


@pytest.mark.parametrize(
    ("cls", "document"),
    [
        (FailureEvent, SPEC_FAILURE_EVENT),
        (PositionSnapshot, SPEC_POSITION),
        (OrderSnapshot, SPEC_ORDER),
        (ProcessState, SPEC_PROCESS_STATE),
        (RecoveryStep, SPEC_STEP),
        (RecoveryStep, SPEC_PENDING_STEP),
        (RecoveryPlan, SPEC_PLAN),
        (FailoverState, SPEC_FAILOVER_STATE),
    ],
    ids=["event", "position", "order", "process-state", "done-step", "pending-step", "plan", "failover-state"],
)
def test_spec_example_round_trips_exactly(cls, document):
    value = cls.from_dict(json.loads(document))
    # Compared as JSON text: 5 must stay 5 (not 5.0), and key sets must match exactly.
    assert _canonical(json.dumps(value.to_dict())) == _canonical(document)
    assert cls.from_dict(value.to_dict()) == value


def test_process_state_reads_into_snake_case_fields():
    state = ProcessState.from_dict(json.loads(SPEC_PROCESS_STATE))
    assert state.pid == 12345
    assert state.active_symbols == ("BTCUSDT", "AI16ZUSDT")
    assert state.open_positions_snapshot[0].entry_price == 91234.5
    assert state.open_orders_snapshot[0].client_order_id == "AISCLP-20251118-0001"
    assert state.last_recovery_at == datetime(2025, 11, 18, 15, 19, tzinfo=UTC)
    assert state.last_failure is not None and state.last_failure.details == {"reconnectAttempts": 3}


def test_null_ids_and_empty_snapshots_round_trip():
    state = ProcessState.from_dict({
        "lastUpdate": "2025-11-18T15:20:30.000Z", "pid": 1, "runMode": "LIVE", "phase": "IDLE",
        "activeSymbols": [], "openPositionsSnapshot": [], "openOrdersSnapshot": [],
        "lastRecoveryAt": None, "lastFailure": None,
    })
    assert state.to_dict()["lastFailure"] is None
    pos = position(exchange_position_id=None)
    assert pos.to_dict()["exchangePositionId"] is None
    assert OrderSnapshot.from_dict(order(exchange_order_id=None).to_dict()).exchange_order_id is None


def test_timestamps_are_written_with_milliseconds_and_z():
    at = datetime(2025, 11, 18, 16, 19, 55, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert FailureEvent(at, "PACKET_LOSS", "X", "m").to_dict()["timestamp"] == "2025-11-18T15:19:55.123Z"
    assert FailureEvent.from_dict({**json.loads(SPEC_FAILURE_EVENT), "timestamp": "2025-11-18T15:19:55+00:00"}
                                  ).to_dict()["timestamp"] == "2025-11-18T15:19:55.000Z"


def test_failure_source_accepts_known_and_new_sources():
    known = FailureEvent(T0, FailureType.MODULE_CRASH, FailureSource.FEATURE_ENGINE, "boom")
    assert known.source == "FEATURE_ENGINE" and known.to_dict()["source"] == "FEATURE_ENGINE"
    assert FailureEvent(T0, "MODULE_CRASH", "SLIPPAGE_TRACKER", "boom").source == "SLIPPAGE_TRACKER"


def test_details_are_copied_so_stored_evidence_cannot_be_aliased():
    details = {"symbols": ["BTCUSDT"]}
    ev = event("PUBLIC_WS_DEGRADED", details=details)
    details["symbols"].append("ETHUSDT")
    ev.to_dict()["details"]["symbols"].append("XRPUSDT")
    assert ev.details == {"symbols": ["BTCUSDT"]}


def test_details_must_be_json():
    with pytest.raises(SchemaError, match="details: must be JSON-serialisable"):
        event("MODULE_CRASH", details={"at": T0})
    with pytest.raises(SchemaError, match="details: must be JSON-serialisable"):
        event("MODULE_CRASH", details={"ratio": float("nan")})
    assert event("MODULE_CRASH", details={"pair": (1, 2)}).details == {"pair": [1, 2]}


def test_enum_values_match_the_django_models():
    from failover import models

    assert [t.value for t in FailureType] == list(models.FailureType.values)
    assert [t.value for t in StepType] == list(models.StepType.values)
    assert [t.value for t in StepStatus] == list(models.StepStatus.values)
    assert [t.value for t in PlanStatus] == list(models.PlanStatus.values)


def _with(document: str, **changes) -> dict:
    data = json.loads(document)
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("cls", "data", "message"),
    [
        (FailureEvent, _with(SPEC_FAILURE_EVENT, type="WS_BROKEN"), "type: expected one of EXCHANGE_UNAVAILABLE"),
        (FailureEvent, _with(SPEC_FAILURE_EVENT, timestamp="2025-11-18T15:19:55"), "timestamp: timestamp needs a zone"),
        (FailureEvent, _with(SPEC_FAILURE_EVENT, timestamp="yesterday"), "timestamp: not an ISO-8601 timestamp"),
        (FailureEvent, _with(SPEC_FAILURE_EVENT, details=[1]), "details: expected an object"),
        (FailureEvent, _with(SPEC_FAILURE_EVENT, message=""), "message: must not be empty"),
        (FailureEvent, {"type": "PACKET_LOSS"}, "timestamp: missing"),
        (FailureEvent, "not an object", "expected an object, got str"),
        (PositionSnapshot, _with(SPEC_POSITION, side="BUY"), "side: expected one of LONG, SHORT, got str 'BUY'"),
        (PositionSnapshot, _with(SPEC_POSITION, qty="0.01"), "qty: expected a number, got str '0.01'"),
        (PositionSnapshot, _with(SPEC_POSITION, leverage=True), "leverage: expected a number, got bool"),
        (PositionSnapshot, _with(SPEC_POSITION, qty=0), "qty: must be > 0"),
        (OrderSnapshot, _with(SPEC_ORDER, status="OPEN"), "status: expected one of NEW, PARTIALLY_FILLED"),
        (OrderSnapshot, _with(SPEC_ORDER, clientOrderId=None, exchangeOrderId=None), "cannot both be null"),
        (ProcessState, _with(SPEC_PROCESS_STATE, runMode="PAPER"), "runMode: expected one of SIM, DRY_RUN"),
        (ProcessState, _with(SPEC_PROCESS_STATE, phase="CRASHED"), "phase: expected one of IDLE"),
        (ProcessState, _with(SPEC_PROCESS_STATE, pid="12345"), "pid: expected an integer"),
        (ProcessState, _with(SPEC_PROCESS_STATE, openOrdersSnapshot=[{**json.loads(SPEC_ORDER), "side": "LONG"}]),
         "openOrdersSnapshot[0].side: expected one of BUY, SELL"),
        (ProcessState, _with(SPEC_PROCESS_STATE, lastFailure={**json.loads(SPEC_FAILURE_EVENT), "type": "X"}),
         "lastFailure.type: expected one of"),
        (RecoveryStep, _with(SPEC_STEP, id="1"), "id: expected 'step-NNN'"),
        (RecoveryStep, _with(SPEC_STEP, type="REBOOT"), "type: expected one of RESYNC_EXCHANGE_CONNECTION"),
        (RecoveryStep, _with(SPEC_STEP, finishedAt=None), "DONE step needs startedAt set and finishedAt set"),
        (RecoveryStep, _with(SPEC_STEP, status="FAILED"), "errorMessage: a FAILED step needs an errorMessage"),
        (RecoveryPlan, _with(SPEC_PLAN, completedSteps=[json.loads(SPEC_PENDING_STEP)]),
         "completedSteps[0].status: completed steps are DONE"),
        (RecoveryPlan, _with(SPEC_PLAN, pendingSteps=[json.loads(SPEC_STEP)]),
         "pendingSteps[0].status: a DONE step belongs in completedSteps"),
        (RecoveryPlan, _with(SPEC_PLAN, pendingSteps=[json.loads(SPEC_PENDING_STEP)] * 2), "step ids must be unique"),
        (FailoverState, _with(SPEC_FAILOVER_STATE, safeMode="yes"), "safeMode: expected true or false"),
        (FailoverState, _with(SPEC_FAILOVER_STATE, currentPlan=_with(SPEC_PLAN, lastGeneratedAt="x")),
         "currentPlan.lastGeneratedAt: not an ISO-8601 timestamp"),
    ],
)
def test_from_dict_refuses_bad_input_naming_the_field(cls, data, message):
    with pytest.raises(SchemaError) as caught:
        cls.from_dict(data)
    assert message in str(caught.value)


def test_second_pending_step_cannot_be_running():
    running = {**json.loads(SPEC_PENDING_STEP), "id": "step-003", "status": "RUNNING",
               "startedAt": "2025-11-18T15:20:11.000Z"}
    with pytest.raises(SchemaError, match=r"pendingSteps\[1\].status: only the first pending step may be RUNNING"):
        RecoveryPlan.from_dict(_with(SPEC_PLAN, pendingSteps=[json.loads(SPEC_PENDING_STEP), running]))


def test_constructor_applies_the_same_checks_as_from_dict():
    with pytest.raises(SchemaError, match="side"):
        position(side="UP")
    with pytest.raises(SchemaError, match="timezone-aware"):
        FailureEvent(datetime(2025, 11, 18), "PACKET_LOSS", "X", "naive")
    with pytest.raises(SchemaError, match="openPositionsSnapshot"):
        ProcessState(last_update=T0, pid=1, run_mode="SIM", phase="RUNNING", open_positions_snapshot=[{"x": 1}])


def test_added_plan_fields_are_written_only_when_set():
    plan = RecoveryPlan(last_generated_at=T0, plan_id="plan-1", failure_type="CONFIG_INVALID",
                        merged_failure_types=("PACKET_LOSS",), symbols=("BTCUSDT",), supersedes="plan-0")
    data = plan.to_dict()
    assert data["planId"] == "plan-1" and data["status"] == "DONE" and data["supersedes"] == "plan-0"
    assert data["mergedFailureTypes"] == ["PACKET_LOSS"]
    assert RecoveryPlan.from_dict(data) == plan
    assert set(RecoveryPlan(last_generated_at=T0).to_dict()) == {"lastGeneratedAt", "pendingSteps", "completedSteps"}


def test_status_document_is_the_state_with_a_timestamp():
    # Spec 9, GET /api/failover/status.
    expected = {"timestamp": "2025-11-18T15:21:00.000Z", **json.loads(SPEC_FAILOVER_STATE)}
    state = FailoverState.from_dict(json.loads(SPEC_FAILOVER_STATE))
    assert state.to_status_dict(datetime(2025, 11, 18, 15, 21, tzinfo=UTC)) == expected


def test_planned_safe_mode_flag_round_trips():
    state = FailoverState(safe_mode=True, reason="MAINTENANCE", since=T0, planned=True)
    assert state.to_dict()["planned"] is True
    assert FailoverState.from_dict(state.to_dict()) == state
    assert "planned" not in FailoverState(safe_mode=False).to_dict()
