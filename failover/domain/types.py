"""The spec's JSON shapes as immutable values (SPEC-phase17 sections 3 to 5), in one import.

The values live by concept: ``failure`` (``FailureEvent``), ``snapshots``
(``PositionSnapshot``, ``OrderSnapshot``, ``ProcessState``) and
``recovery_plan`` (``RecoveryStep``, ``RecoveryPlan``, ``FailoverState``); the
enums live in ``enums``. This module gathers them, so callers write
``from failover.domain.types import RecoveryPlan, FailureType``.

Why frozen dataclasses with explicit checks and not pydantic models: the wire
shape must be exact (millisecond ``Z`` timestamps, ``5`` stays ``5`` and
``0.01`` stays ``0.01``, nulls written, fields this package adds left out when
unset so a spec document round-trips byte for byte), numeric strings must be
refused rather than coerced, and these values are built on the trader's hot
path, where a plain slotted dataclass is cheaper. Every check lives in
``__post_init__``, so a value built in Python is held to the same rules as one
read from disk; ``from_dict`` only maps camelCase to snake_case and names the
path of a bad field. Values are immutable: a step transition or a state update
returns a new value, which is what lets a timer thread and the hot loop share
them without copying.
"""

from __future__ import annotations

from failover.domain._codec import SchemaError
from failover.domain.enums import (
    FailureSource,
    FailureType,
    OrderSide,
    OrderStatus,
    Phase,
    PlanStatus,
    PositionSide,
    RunMode,
    StepStatus,
    StepType,
)
from failover.domain.failure import FailureEvent
from failover.domain.recovery_plan import FailoverState, RecoveryPlan, RecoveryStep
from failover.domain.snapshots import OrderSnapshot, PositionSnapshot, ProcessState

__all__ = [
    "FailoverState", "FailureEvent", "FailureSource", "FailureType", "OrderSide", "OrderSnapshot",
    "OrderStatus", "Phase", "PlanStatus", "PositionSide", "PositionSnapshot", "ProcessState", "RecoveryPlan",
    "RecoveryStep", "RunMode", "SchemaError", "StepStatus", "StepType",
]
