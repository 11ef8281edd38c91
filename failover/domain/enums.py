"""The failover vocabulary: failure types and sources, modes, phases, sides and statuses.

Every enum is a ``StrEnum``, so a member is its JSON value (``str(member)`` and
``json.dumps`` both give ``"SIM"``), and the Django ``TextChoices`` in
``failover.models`` carry the same values.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum


def utc_now() -> datetime:
    """Return the current UTC time, to stamp one value built outside the hot path.

    Code that reads time repeatedly (detectors, the process state store, plans)
    takes a ``failover.domain.clock.Clock`` instead, so tests can move time.
    """
    return datetime.now(UTC)


class FailureType(StrEnum):
    """The failure taxonomy (spec section 2); the same values as ``failover.models.FailureType``."""

    EXCHANGE_UNAVAILABLE = "EXCHANGE_UNAVAILABLE"
    PRIVATE_WS_DISCONNECTED = "PRIVATE_WS_DISCONNECTED"
    PUBLIC_WS_DEGRADED = "PUBLIC_WS_DEGRADED"
    NON_SYNC_STATE = "NON_SYNC_STATE"
    LATENCY_TOO_HIGH = "LATENCY_TOO_HIGH"
    PACKET_LOSS = "PACKET_LOSS"
    MODULE_CRASH = "MODULE_CRASH"
    DATA_CORRUPTION = "DATA_CORRUPTION"
    CONFIG_INVALID = "CONFIG_INVALID"
    PROCESS_RESTART = "PROCESS_RESTART"
    UNEXPECTED_SHUTDOWN = "UNEXPECTED_SHUTDOWN"


DETECTED_IN_PROCESS = frozenset({
    FailureType.EXCHANGE_UNAVAILABLE, FailureType.PRIVATE_WS_DISCONNECTED, FailureType.PUBLIC_WS_DEGRADED,
    FailureType.LATENCY_TOO_HIGH, FailureType.PACKET_LOSS, FailureType.MODULE_CRASH,
})
"""Conditions a trader process's own detectors hold and clear. They die with the process: after a restart
the new process measures afresh and reports again what still holds, so a restart forgets them."""

RESTART_TYPES = frozenset({FailureType.PROCESS_RESTART, FailureType.UNEXPECTED_SHUTDOWN})
"""The failures that say the previous trader process is gone: a new plan supersedes the running one, the
types in ``DETECTED_IN_PROCESS`` are dropped, and order intents older than the plan are resolved at once."""


class FailureSource(StrEnum):
    """Known reporters of failures; ``FailureEvent.source`` also takes any other non-empty string."""

    EXECUTION_ENGINE = "EXECUTION_ENGINE"
    MARKET_DATA_SERVICE = "MARKET_DATA_SERVICE"
    FEATURE_ENGINE = "FEATURE_ENGINE"
    REGIME_ENGINE = "REGIME_ENGINE"
    SCORING_ENGINE = "SCORING_ENGINE"
    STATE_MACHINE = "STATE_MACHINE"
    RISK_ENGINE = "RISK_ENGINE"
    CONFIG_ENGINE = "CONFIG_ENGINE"
    PROCESS_STATE_STORE = "PROCESS_STATE_STORE"
    RECONCILER = "RECONCILER"
    LATENCY_MONITOR = "LATENCY_MONITOR"
    FAILOVER_MANAGER = "FAILOVER_MANAGER"
    OPERATOR = "OPERATOR"


class RunMode(StrEnum):
    SIM = "SIM"
    DRY_RUN = "DRY_RUN"
    LIVE = "LIVE"
    REPLAY = "REPLAY"


class Phase(StrEnum):
    IDLE = "IDLE"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    RECOVERING = "RECOVERING"


class PositionSide(StrEnum):
    LONG = "LONG"
    SHORT = "SHORT"


class OrderSide(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        """Return +1 for BUY, -1 for SELL."""
        return 1 if self is OrderSide.BUY else -1

    @property
    def opposite(self) -> OrderSide:
        """Return the side that closes a position opened on this side."""
        return OrderSide.SELL if self is OrderSide.BUY else OrderSide.BUY

    @classmethod
    def opening(cls, position_side: str) -> OrderSide:
        """Return the side that opened a position on ``position_side`` ("LONG" -> BUY, otherwise SELL)."""
        return cls.BUY if position_side == "LONG" else cls.SELL


class OrderStatus(StrEnum):
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"

    @property
    def is_open(self) -> bool:
        return self in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)


class StepType(StrEnum):
    RESYNC_EXCHANGE_CONNECTION = "RESYNC_EXCHANGE_CONNECTION"
    RESYNC_POSITIONS = "RESYNC_POSITIONS"
    RESYNC_ORDERS = "RESYNC_ORDERS"
    CLEAR_LOCAL_STATE = "CLEAR_LOCAL_STATE"
    DISABLE_TRADING = "DISABLE_TRADING"
    RESYNC_CONFIG = "RESYNC_CONFIG"
    READ_PROCESS_STATE = "READ_PROCESS_STATE"


class StepStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"


class PlanStatus(StrEnum):
    """The values of ``failover.models.PlanStatus``.

    ``plans.plan_status`` derives RUNNING, DONE or FAILED from the steps; PENDING,
    WAITING_OPERATOR and SUPERSEDED are decisions of the service that runs plans.
    """

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    WAITING_OPERATOR = "WAITING_OPERATOR"
    SUPERSEDED = "SUPERSEDED"
