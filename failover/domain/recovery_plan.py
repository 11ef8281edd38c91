"""A recovery plan and its steps (spec 4.1), and the FailoverState that carries the current plan (spec 5.1)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from failover.domain import _codec as c
from failover.domain._codec import SchemaError
from failover.domain.enums import FailureType, PlanStatus, StepStatus, StepType
from failover.domain.failure import FailureEvent

_STEP_ID = re.compile(r"^step-\d{3,}$")


@dataclass(frozen=True, slots=True)
class RecoveryStep:
    """One typed step of a plan (spec 4.1); the timestamps must agree with the status."""

    id: str
    type: StepType
    status: StepStatus
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    details: dict[str, Any] = field(default_factory=dict)
    error_message: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _STEP_ID.match(self.id):
            raise SchemaError("id", f"expected 'step-NNN', got {self.id!r}")
        c.assign(self, "type", c.enum(StepType, self.type, "type"))
        c.assign(self, "status", c.enum(StepStatus, self.status, "status"))
        c.assign(self, "created_at", c.to_ms(self.created_at, "createdAt"))
        if self.started_at is not None:
            c.assign(self, "started_at", c.to_ms(self.started_at, "startedAt"))
        if self.finished_at is not None:
            c.assign(self, "finished_at", c.to_ms(self.finished_at, "finishedAt"))
        c.assign(self, "details", c.details(self.details, "details"))
        c.opt_string(self.error_message, "errorMessage")
        self._check_timestamps()

    def _check_timestamps(self) -> None:
        # A step whose times contradict its status was not written by a legal transition.
        started, finished = self.started_at is not None, self.finished_at is not None
        expected = {
            StepStatus.PENDING: (False, False),
            StepStatus.RUNNING: (True, False),
            StepStatus.DONE: (True, True),
            StepStatus.FAILED: (True, True),
        }[self.status]
        if (started, finished) != expected:
            raise SchemaError("status", f"{self.status.value} step needs startedAt "
                              f"{'set' if expected[0] else 'null'} and finishedAt {'set' if expected[1] else 'null'}")
        if self.status is StepStatus.FAILED and self.error_message is None:
            raise SchemaError("errorMessage", "a FAILED step needs an errorMessage")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type.value,
            "status": self.status.value,
            "createdAt": c.format_ts(self.created_at),
            "startedAt": c.format_opt_ts(self.started_at),
            "finishedAt": c.format_opt_ts(self.finished_at),
            "details": c.details(self.details, "details"),
            "errorMessage": self.error_message,
        }

    @classmethod
    def from_dict(cls, data: Any, path: str = "") -> RecoveryStep:
        def build() -> RecoveryStep:
            d = c.obj(data, "")
            return cls(
                id=c.field(d, "id", ""),
                type=c.field(d, "type", ""),
                status=c.field(d, "status", ""),
                created_at=c.parse_ts(c.field(d, "createdAt", ""), "createdAt"),
                started_at=c.parse_opt_ts(c.opt(d, "startedAt"), "startedAt"),
                finished_at=c.parse_opt_ts(c.opt(d, "finishedAt"), "finishedAt"),
                details=c.opt(d, "details", {}),
                error_message=c.opt(d, "errorMessage"),
            )

        return c.read(path, build)


@dataclass(frozen=True, slots=True)
class RecoveryPlan:
    """The plan in ``data/system/recovery_plan.json`` (spec 4.1), plus fields this package adds.

    ``pending_steps`` are the steps not yet DONE, in the order they run: only the
    first may be RUNNING or FAILED. ``completed_steps`` are DONE, in the order they
    finished. The added fields (``planId``, ``failureType``, ``mergedFailureTypes``,
    ``symbols``, ``supersedes`` and the derived ``status``) are written only when
    set, so a document with only the spec's fields round-trips unchanged.
    """

    last_generated_at: datetime
    pending_steps: tuple[RecoveryStep, ...] = ()
    completed_steps: tuple[RecoveryStep, ...] = ()
    plan_id: str | None = None
    failure_type: FailureType | None = None
    merged_failure_types: tuple[FailureType, ...] = ()
    symbols: tuple[str, ...] = ()
    supersedes: str | None = None

    def __post_init__(self) -> None:
        c.assign(self, "last_generated_at", c.to_ms(self.last_generated_at, "lastGeneratedAt"))
        c.assign(self, "pending_steps", c.items(RecoveryStep, self.pending_steps, "pendingSteps"))
        c.assign(self, "completed_steps", c.items(RecoveryStep, self.completed_steps, "completedSteps"))
        c.opt_string(self.plan_id, "planId")
        if self.failure_type is not None:
            c.assign(self, "failure_type", c.enum(FailureType, self.failure_type, "failureType"))
        c.assign(self, "merged_failure_types", tuple(
            c.enum(FailureType, t, f"mergedFailureTypes[{i}]")
            for i, t in enumerate(c.array(self.merged_failure_types, "mergedFailureTypes"))
        ))
        c.assign(self, "symbols", c.string_list(self.symbols, "symbols"))
        c.opt_string(self.supersedes, "supersedes")
        self._check_steps()

    def _check_steps(self) -> None:
        for i, step in enumerate(self.completed_steps):
            if step.status is not StepStatus.DONE:
                raise SchemaError(f"completedSteps[{i}].status", f"completed steps are DONE, got {step.status.value}")
        for i, step in enumerate(self.pending_steps):
            if step.status is StepStatus.DONE:
                raise SchemaError(f"pendingSteps[{i}].status", "a DONE step belongs in completedSteps")
            if i > 0 and step.status is not StepStatus.PENDING:
                # Steps run one at a time in order, so only the head can have started.
                raise SchemaError(f"pendingSteps[{i}].status",
                                  f"only the first pending step may be {step.status.value}")
        ids = [s.id for s in self.all_steps]
        if len(ids) != len(set(ids)):
            raise SchemaError("pendingSteps", f"step ids must be unique, got {ids}")

    @property
    def status(self) -> PlanStatus:
        """Derive the plan's status from its steps: FAILED if one failed, DONE if none is left, else RUNNING.

        A plan whose first step has not started yet is RUNNING too: recovery is in
        progress from the moment the plan exists.
        """
        if any(s.status is StepStatus.FAILED for s in self.pending_steps):
            return PlanStatus.FAILED
        return PlanStatus.RUNNING if self.pending_steps else PlanStatus.DONE

    @property
    def all_steps(self) -> tuple[RecoveryStep, ...]:
        """Return completed then pending steps: the plan's history in order."""
        return self.completed_steps + self.pending_steps

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "lastGeneratedAt": c.format_ts(self.last_generated_at),
            "pendingSteps": [s.to_dict() for s in self.pending_steps],
            "completedSteps": [s.to_dict() for s in self.completed_steps],
        }
        if self.plan_id is not None:
            data["planId"] = self.plan_id
            data["status"] = self.status.value
        if self.failure_type is not None:
            data["failureType"] = self.failure_type.value
        if self.merged_failure_types:
            data["mergedFailureTypes"] = [t.value for t in self.merged_failure_types]
        if self.symbols:
            data["symbols"] = list(self.symbols)
        if self.supersedes is not None:
            data["supersedes"] = self.supersedes
        return data

    @classmethod
    def from_dict(cls, data: Any, path: str = "") -> RecoveryPlan:
        def build() -> RecoveryPlan:
            d = c.obj(data, "")
            pending = c.array(c.field(d, "pendingSteps", ""), "pendingSteps")
            completed = c.array(c.field(d, "completedSteps", ""), "completedSteps")
            # "status" is derived from the steps on write, so it is not read back.
            return cls(
                last_generated_at=c.parse_ts(c.field(d, "lastGeneratedAt", ""), "lastGeneratedAt"),
                pending_steps=tuple(RecoveryStep.from_dict(s, f"pendingSteps[{i}]") for i, s in enumerate(pending)),
                completed_steps=tuple(
                    RecoveryStep.from_dict(s, f"completedSteps[{i}]") for i, s in enumerate(completed)
                ),
                plan_id=c.opt(d, "planId"),
                failure_type=c.opt(d, "failureType"),
                merged_failure_types=c.opt(d, "mergedFailureTypes", ()),
                symbols=c.opt(d, "symbols", ()),
                supersedes=c.opt(d, "supersedes"),
            )

        return c.read(path, build)


@dataclass(frozen=True, slots=True)
class FailoverState:
    """What the FailoverManager owns (spec 5.1); ``planned`` (added, written only when true) marks an operator's
    safe mode, which health reports as OK."""

    safe_mode: bool
    reason: str | None = None  # a FailureType value, or an operator's reason for a planned safe mode
    since: datetime | None = None
    last_failure: FailureEvent | None = None
    recovery_in_progress: bool = False
    current_plan: RecoveryPlan | None = None
    planned: bool = False

    def __post_init__(self) -> None:
        c.boolean(self.safe_mode, "safeMode")
        if self.reason is not None:
            c.assign(self, "reason", str(c.string(self.reason, "reason")))
        if self.since is not None:
            c.assign(self, "since", c.to_ms(self.since, "since"))
        if self.last_failure is not None and not isinstance(self.last_failure, FailureEvent):
            raise SchemaError("lastFailure", f"expected FailureEvent, got {type(self.last_failure).__name__}")
        c.boolean(self.recovery_in_progress, "recoveryInProgress")
        if self.current_plan is not None and not isinstance(self.current_plan, RecoveryPlan):
            raise SchemaError("currentPlan", f"expected RecoveryPlan, got {type(self.current_plan).__name__}")
        c.boolean(self.planned, "planned")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "safeMode": self.safe_mode,
            "reason": self.reason,
            "since": c.format_opt_ts(self.since),
            "lastFailure": None if self.last_failure is None else self.last_failure.to_dict(),
            "recoveryInProgress": self.recovery_in_progress,
            "currentPlan": None if self.current_plan is None else self.current_plan.to_dict(),
        }
        if self.planned:
            data["planned"] = True
        return data

    def to_status_dict(self, now: datetime) -> dict[str, Any]:
        """Return the ``GET /api/failover/status`` body (spec 9): the state with the time it was read."""
        return {"timestamp": c.format_ts(now), **self.to_dict()}

    @classmethod
    def from_dict(cls, data: Any, path: str = "") -> FailoverState:
        def build() -> FailoverState:
            d = c.obj(data, "")
            failure, plan = c.opt(d, "lastFailure"), c.opt(d, "currentPlan")
            return cls(
                safe_mode=c.field(d, "safeMode", ""),
                reason=c.opt(d, "reason"),
                since=c.parse_opt_ts(c.opt(d, "since"), "since"),
                last_failure=None if failure is None else FailureEvent.from_dict(failure, "lastFailure"),
                recovery_in_progress=c.field(d, "recoveryInProgress", ""),
                current_plan=None if plan is None else RecoveryPlan.from_dict(plan, "currentPlan"),
                planned=c.opt(d, "planned", False),
            )

        return c.read(path, build)
