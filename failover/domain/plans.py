"""From a failure to a recovery plan: the table of steps per failure type, and how plans merge.

Steps always run in one canonical order (``STEP_ORDER``), whatever failures
contributed them:

1. DISABLE_TRADING: block entries before anything else changes;
2. RESYNC_CONFIG: later steps may depend on config (symbols, endpoints);
3. READ_PROCESS_STATE: know what the last run believed before comparing;
4. RESYNC_EXCHANGE_CONNECTION: the resyncs need a working connection;
5. RESYNC_POSITIONS: before orders, because an order missing on the exchange
   may have filled into a position;
6. RESYNC_ORDERS;
7. CLEAR_LOCAL_STATE: last, because it keeps the contexts of symbols that still
   hold a position (spec 6), which only a resync knows.

Merge rule (one plan runs at a time; ``merge_plan``):

- no current plan, or it is DONE: a fresh plan for the new failure;
- the current plan FAILED, or the new failure is a restart (PROCESS_RESTART,
  UNEXPECTED_SHUTDOWN: the process that ran the plan is gone and its RUNNING
  step will never finish): a new plan supersedes it (``supersedes`` = old
  ``planId``), made of the new failure's steps plus every step type the old
  plan had not finished, all PENDING, in canonical order;
- otherwise the plan is RUNNING and is extended in place (same ``planId``): the
  running step is left to finish; each step type the new failure needs is
  added as a new PENDING step unless a PENDING step of that type is already
  waiting (that one widens its ``symbols`` instead, and will see the new
  failure's effects when it runs). A type that is DONE, or RUNNING since before
  the failure, is added again, because its result predates the failure. The
  not-yet-started tail is then put back in canonical order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from failover.domain.clock import Clock
from failover.domain.enums import RESTART_TYPES
from failover.domain.steps import (  # re-exported: the transition API belongs with the plans
    IllegalTransition,
    current_step,
    fail_step,
    finish_step,
    plan_started_at,
    plan_status,
    retry_step,
    runnable_step,
    safe_mode_exit_allowed,
    start_step,
)
from failover.domain.types import (
    FailureEvent,
    FailureType,
    PlanStatus,
    ProcessState,
    RecoveryPlan,
    RecoveryStep,
    StepStatus,
    StepType,
)

__all__ = [
    "MINIMAL_RESTART", "PLAN_TABLE", "STEP_ORDER", "IllegalTransition", "PlanRule", "current_step", "fail_step",
    "finish_step", "generate_plan", "merge_plan", "plan_rule", "plan_started_at", "plan_status",
    "render_plan_table", "retry_step", "runnable_step", "safe_mode_exit_allowed", "start_step",
]

STEP_ORDER: tuple[StepType, ...] = (
    StepType.DISABLE_TRADING,
    StepType.RESYNC_CONFIG,
    StepType.READ_PROCESS_STATE,
    StepType.RESYNC_EXCHANGE_CONNECTION,
    StepType.RESYNC_POSITIONS,
    StepType.RESYNC_ORDERS,
    StepType.CLEAR_LOCAL_STATE,
)
_RANK = {step_type: i for i, step_type in enumerate(STEP_ORDER)}


@dataclass(frozen=True, slots=True)
class PlanRule:
    """The steps one failure type needs, and the reason a trader would give for them."""

    steps: tuple[StepType, ...]
    why: str


_S = StepType
PLAN_TABLE: dict[FailureType, PlanRule] = {
    FailureType.EXCHANGE_UNAVAILABLE: PlanRule(
        (_S.RESYNC_EXCHANGE_CONNECTION, _S.RESYNC_POSITIONS, _S.RESYNC_ORDERS),
        "While the exchange was unreachable, fills, cancels and liquidations went unseen: reconnect first, "
        "then take positions and orders from the exchange (scenario A).",
    ),
    FailureType.PRIVATE_WS_DISCONNECTED: PlanRule(
        (_S.RESYNC_EXCHANGE_CONNECTION, _S.RESYNC_POSITIONS, _S.RESYNC_ORDERS),
        "The position and order feed was down, so fill and cancel messages may be lost: reconnect, then "
        "re-read both over REST (spec 5.3).",
    ),
    FailureType.PUBLIC_WS_DEGRADED: PlanRule(
        (_S.RESYNC_EXCHANGE_CONNECTION, _S.CLEAR_LOCAL_STATE),
        "Only market data suffered; the private feed still tracks positions and orders. Reconnect the public "
        "streams and reset WATCH/ARM states of the named symbols, whose signals were built on gappy data.",
    ),
    FailureType.NON_SYNC_STATE: PlanRule(
        (_S.RESYNC_POSITIONS, _S.RESYNC_ORDERS, _S.CLEAR_LOCAL_STATE),
        "Local state and the exchange disagree, and the exchange is the truth; contexts built on the wrong "
        "view are reset after the resync (spec 4.2).",
    ),
    FailureType.LATENCY_TOO_HIGH: PlanRule(
        (_S.RESYNC_POSITIONS, _S.RESYNC_ORDERS),
        "Slow round trips leave request outcomes uncertain (a timed-out order may have landed and filled). "
        "Reconnecting does not cure a slow network, so only verify; safe mode stays on until latency is "
        "back under the threshold.",
    ),
    FailureType.PACKET_LOSS: PlanRule(
        (_S.RESYNC_EXCHANGE_CONNECTION, _S.RESYNC_POSITIONS, _S.RESYNC_ORDERS),
        "Flapping connections drop messages between reconnects: take one clean connection and re-read "
        "positions and orders instead of trusting the gaps.",
    ),
    FailureType.MODULE_CRASH: PlanRule(
        (_S.RESYNC_POSITIONS, _S.RESYNC_ORDERS, _S.CLEAR_LOCAL_STATE),
        "A module died mid-update, so in-memory state may be half-written: rebuild positions and orders from "
        "the exchange, then reset per-symbol contexts (after the resync, which says which symbols hold a "
        "position and keep theirs).",
    ),
    FailureType.DATA_CORRUPTION: PlanRule(
        (_S.RESYNC_POSITIONS, _S.RESYNC_ORDERS, _S.CLEAR_LOCAL_STATE),
        "A local file cannot be trusted, so reading the process state would read nothing useful: rebuild "
        "everything from the exchange and reset what was derived locally.",
    ),
    FailureType.CONFIG_INVALID: PlanRule(
        (_S.DISABLE_TRADING, _S.RESYNC_CONFIG),
        "Block entries first (closing still allowed), then fall back to the built-in config (spec 6). The "
        "exchange state was not touched, so no resync; safe mode stays on until an admin fixes the config.",
    ),
    FailureType.PROCESS_RESTART: PlanRule(
        (_S.READ_PROCESS_STATE, _S.RESYNC_POSITIONS, _S.RESYNC_ORDERS),
        "Graceful restart: learn what the last run believed, then confirm it against the exchange (spec 4.2).",
    ),
    FailureType.UNEXPECTED_SHUTDOWN: PlanRule(
        (_S.READ_PROCESS_STATE, _S.RESYNC_POSITIONS, _S.RESYNC_ORDERS, _S.CLEAR_LOCAL_STATE),
        "The process died mid-flight: its snapshot can be seconds old and an order may have been sent "
        "unconfirmed, so always a full resync, even with an empty snapshot; contexts restored from before "
        "the crash are stale.",
    ),
}
MINIMAL_RESTART = PlanRule(
    (_S.READ_PROCESS_STATE, _S.RESYNC_ORDERS),
    "Scenario C: a graceful stop whose final snapshot holds no position and no order is trusted, so no "
    "position resync; one open-orders call still catches a stray resting order, and safe mode can go off "
    "quickly.",
)

# Which connections RESYNC_EXCHANGE_CONNECTION re-establishes, so the runner does not bounce healthy ones.
_CONNECTIONS: dict[FailureType, tuple[str, ...]] = {
    FailureType.PRIVATE_WS_DISCONNECTED: ("privateWs",),
    FailureType.PUBLIC_WS_DEGRADED: ("publicWs",),
}
_ALL_CONNECTIONS = ("rest", "privateWs", "publicWs")
_SCOPE_KEYS = ("symbols", "connections")


def plan_rule(failure_type: FailureType, previous_state: ProcessState | None = None) -> PlanRule:
    """Return the table row for ``failure_type``; a graceful restart with nothing open gets ``MINIMAL_RESTART``."""
    if (
        failure_type is FailureType.PROCESS_RESTART
        and previous_state is not None
        and not previous_state.open_positions_snapshot
        and not previous_state.open_orders_snapshot
    ):
        return MINIMAL_RESTART
    return PLAN_TABLE[failure_type]


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _event_symbols(event: FailureEvent) -> list[str] | None:
    named = event.details.get("symbols")
    if isinstance(named, list) and named and all(isinstance(s, str) and s for s in named):
        return _unique(named)
    return None


def _step_symbols(step_type: StepType, event: FailureEvent, symbols: Sequence[str],
                  previous_state: ProcessState | None) -> list[str]:
    """Return the symbols a step covers: the failure's named symbols, else every symbol that matters."""
    named = _event_symbols(event)
    if named is not None and event.type is FailureType.PUBLIC_WS_DEGRADED:
        return named  # only these symbols lost market data
    covered = list(symbols)
    if previous_state is not None and step_type in (StepType.RESYNC_POSITIONS, StepType.RESYNC_ORDERS):
        # A position or order in a symbol since dropped from the config must still be found.
        covered += previous_state.active_symbols
        covered += [p.symbol for p in previous_state.open_positions_snapshot]
        covered += [o.symbol for o in previous_state.open_orders_snapshot]
    if named is not None:
        covered += named
    return _unique(covered)


def _step_details(step_type: StepType, event: FailureEvent, symbols: Sequence[str],
                  previous_state: ProcessState | None) -> dict[str, Any]:
    details: dict[str, Any] = {"symbols": _step_symbols(step_type, event, symbols, previous_state)}
    if step_type is StepType.RESYNC_EXCHANGE_CONNECTION:
        details["connections"] = list(_CONNECTIONS.get(event.type, _ALL_CONNECTIONS))
    return details


def _widen(details: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Return ``details`` whose scope lists (symbols, connections) also cover ``extra``'s."""
    widened = dict(details)
    for key in _SCOPE_KEYS:
        if key in details or key in extra:
            widened[key] = _unique([*details.get(key, []), *extra.get(key, [])])
    return widened


def _step_number(step_id: str) -> int:
    return int(step_id.removeprefix("step-"))


def _plan_id(clock_value: datetime, taken: Iterable[str | None] = ()) -> str:
    """Return a deterministic id from the time; a suffix keeps it distinct from ``taken`` in the same millisecond."""
    base = f"plan-{clock_value:%Y%m%d-%H%M%S}-{clock_value.microsecond // 1000:03d}"
    taken_ids = set(taken)
    candidate, n = base, 1
    while candidate in taken_ids:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def _sorted_types(types: Iterable[StepType]) -> list[StepType]:
    return sorted(set(types), key=_RANK.__getitem__)


def generate_plan(
    event: FailureEvent,
    *,
    clock: Clock,
    symbols: Sequence[str],
    previous_state: ProcessState | None = None,
    plan_id: str | None = None,
) -> RecoveryPlan:
    """Build a fresh plan for ``event``: the table's steps, all PENDING, numbered ``step-001`` on."""
    return _generate(event, now=clock.now(), symbols=symbols, previous_state=previous_state, plan_id=plan_id)


def _generate(event: FailureEvent, *, now: datetime, symbols: Sequence[str], previous_state: ProcessState | None,
              plan_id: str | None) -> RecoveryPlan:
    rule = plan_rule(event.type, previous_state)
    steps = tuple(
        RecoveryStep(id=f"step-{i:03d}", type=step_type, status=StepStatus.PENDING, created_at=now,
                     details=_step_details(step_type, event, symbols, previous_state))
        for i, step_type in enumerate(_sorted_types(rule.steps), start=1)
    )
    return RecoveryPlan(
        last_generated_at=now,
        pending_steps=steps,
        plan_id=plan_id or _plan_id(now),
        failure_type=event.type,
        symbols=tuple(_unique(s for step in steps for s in step.details["symbols"])),
    )


def merge_plan(
    current_plan: RecoveryPlan | None,
    new_event: FailureEvent,
    *,
    clock: Clock,
    symbols: Sequence[str],
    previous_state: ProcessState | None = None,
    plan_id: str | None = None,
) -> RecoveryPlan:
    """Fold ``new_event`` into the plan in progress by the module's merge rule; return the plan to run.

    The result has the same ``plan_id`` when the plan was extended, a new one
    (with ``supersedes`` set) when it was superseded, and a new one without
    ``supersedes`` when there was nothing to merge into.
    """
    now = clock.now()
    if current_plan is None or current_plan.status is PlanStatus.DONE:
        taken = [] if current_plan is None else [current_plan.plan_id]
        return _generate(new_event, now=now, symbols=symbols, previous_state=previous_state,
                         plan_id=plan_id or _plan_id(now, taken))
    if current_plan.status is PlanStatus.FAILED or new_event.type in RESTART_TYPES:
        return _supersede(current_plan, new_event, now=now, symbols=symbols, previous_state=previous_state,
                          plan_id=plan_id)
    return _extend(current_plan, new_event, now=now, symbols=symbols, previous_state=previous_state)


def _covered_types(plan: RecoveryPlan) -> list[FailureType]:
    return [t for t in (plan.failure_type, *plan.merged_failure_types) if t is not None]


def _supersede(current: RecoveryPlan, event: FailureEvent, *, now: datetime, symbols: Sequence[str],
               previous_state: ProcessState | None, plan_id: str | None) -> RecoveryPlan:
    fresh = _generate(event, now=now, symbols=symbols, previous_state=previous_state,
                      plan_id=plan_id or _plan_id(now, [current.plan_id]))
    wanted = {s.type: dict(s.details) for s in fresh.pending_steps}
    for old in current.pending_steps:  # every type the old plan had not finished is carried over
        scope = {k: v for k, v in old.details.items() if k in _SCOPE_KEYS}
        wanted[old.type] = _widen(wanted.get(old.type, {}), scope)
    steps = tuple(
        RecoveryStep(id=f"step-{i:03d}", type=t, status=StepStatus.PENDING, created_at=now, details=wanted[t])
        for i, t in enumerate(_sorted_types(wanted), start=1)
    )
    merged = [t for t in _unique(_covered_types(current)) if t != event.type]
    return replace(
        fresh,
        pending_steps=steps,
        merged_failure_types=tuple(FailureType(t) for t in merged),
        symbols=tuple(_unique([*fresh.symbols, *current.symbols])),
        supersedes=current.plan_id,
    )


def _extend(current: RecoveryPlan, event: FailureEvent, *, now: datetime, symbols: Sequence[str],
            previous_state: ProcessState | None) -> RecoveryPlan:
    pending = list(current.pending_steps)
    head = pending.pop(0) if pending and pending[0].status is StepStatus.RUNNING else None
    waiting = {step.type: i for i, step in enumerate(pending)}  # PENDING steps, one per type at most
    next_number = max((_step_number(s.id) for s in current.all_steps), default=0) + 1
    for step_type in plan_rule(event.type, previous_state).steps:
        details = _step_details(step_type, event, symbols, previous_state)
        if step_type in waiting:
            step = pending[waiting[step_type]]
            pending[waiting[step_type]] = replace(step, details=_widen(step.details, details))
            continue
        # Absent, DONE, or RUNNING since before this failure: its result predates the failure.
        pending.append(RecoveryStep(id=f"step-{next_number:03d}", type=step_type, status=StepStatus.PENDING,
                                    created_at=now, details=details))
        waiting[step_type] = len(pending) - 1
        next_number += 1
    pending.sort(key=lambda s: _RANK[s.type])  # stable: equal types keep their order
    covered = _covered_types(current)
    merged = [*current.merged_failure_types, *([event.type] if event.type not in covered else [])]
    return replace(
        current,
        last_generated_at=now,
        pending_steps=((head,) if head else ()) + tuple(pending),
        merged_failure_types=tuple(merged),
        symbols=tuple(_unique([*current.symbols, *(s for p in pending for s in p.details.get("symbols", []))])),
    )


def render_plan_table() -> str:
    """Return the failure -> steps table as Markdown (the README embeds it; a test keeps them equal)."""
    lines = ["| Failure type | Steps, in order | Why |", "|---|---|---|"]
    rows = [(f"`{t.value}`", rule) for t, rule in PLAN_TABLE.items()]
    rows.insert(
        list(PLAN_TABLE).index(FailureType.PROCESS_RESTART) + 1,
        ("`PROCESS_RESTART`, snapshot with no position and no order", MINIMAL_RESTART),
    )
    for label, rule in rows:
        steps = " → ".join(f"`{s.value}`" for s in _sorted_types(rule.steps))
        lines.append(f"| {label} | {steps} | {rule.why} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # print the table to paste into README.md
    print(render_plan_table(), end="")
