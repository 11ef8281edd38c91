"""The invariants of a chaos run, checked from the exchange's record: a plain module over a recorded history.

A run's history is a folder (``history.py`` writes it, ``load`` reads it back):
the simulator's journal of orders, executions and positions (``exchange.jsonl``),
every change of the failover state with its version and time
(``failover_states.jsonl``), the harness's own timeline of kills, restarts,
faults, behind-the-back actions and checkpoints (``timeline.jsonl``) and the
bounds the run was held to (``meta.json``). ``check`` needs nothing else: no
database, no simulator, no Django, so a failing run is re-checked offline
(``manage.py itest check <folder>``) exactly as it was judged.

Safety (never): an ``orderLinkId`` on two exchange orders; an entry the
exchange accepted while safe mode was on or trading was halted; a second entry
stacked on a symbol's open position; local state apart from the exchange's at a
checkpoint (after each recovery, at the end). Liveness (always): safe mode off
within ``livenessS`` of the last fault clearing; the trader RUNNING within
``restartS`` of each restart; an entry again after the last fault or kill.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any

from failover.domain.state_history import StateChange, blocked_intervals

UNIQUE_LINK = "uniqueOrderLinkId"
NO_ENTRY_IN_SAFE_MODE = "noEntryInSafeMode"
ONE_ENTRY_PER_POSITION = "oneEntryPerPosition"
LOCAL_EQUALS_EXCHANGE = "localEqualsExchange"
SAFE_MODE_ENDS = "safeModeEnds"
RESTART_RUNNING = "restartRunning"
TRADES_AGAIN = "tradesAgain"
INVARIANTS = (UNIQUE_LINK, NO_ENTRY_IN_SAFE_MODE, ONE_ENTRY_PER_POSITION, LOCAL_EQUALS_EXCHANGE, SAFE_MODE_ENDS,
              RESTART_RUNNING, TRADES_AGAIN)
EVIDENCE_KEPT = 20  # per invariant: enough to act on, small enough for a report
ZERO = Decimal(0)


@dataclass
class History:
    """A recorded run: what ``check`` reads."""

    exchange: list[dict[str, Any]]
    states: list[dict[str, Any]]
    timeline: list[dict[str, Any]]
    meta: dict[str, Any]
    events_dir: Path | None = None  # the trader's event logs (``<run>/data/events``), read for evidence only

    @cached_property
    def orders(self) -> dict[str, list[dict[str, Any]]]:
        """Every order record, grouped by orderId, in journal order (read once, whatever asks)."""
        return _orders(self.exchange)

    @cached_property
    def entries(self) -> list[dict[str, Any]]:
        """The trader's entries as the exchange accepted them: first record of each non-reduce-only API order."""
        return [records[0] for records in self.orders.values() if _is_trader_entry(records[0])]


@dataclass
class Verdict:
    """Violations per invariant (with evidence) and the run's figures."""

    violations: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {name: [] for name in INVARIANTS})
    metrics: dict[str, Any] = field(default_factory=dict)

    def add(self, invariant: str, **evidence: Any) -> None:
        self.violations[invariant].append(evidence)

    @property
    def ok(self) -> bool:
        return not any(self.violations.values())

    def counts(self) -> dict[str, int]:
        return {name: len(found) for name, found in self.violations.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "violations": self.counts(),
                "evidence": {name: found[:EVIDENCE_KEPT] for name, found in self.violations.items() if found},
                "metrics": self.metrics}


# -- reading ---------------------------------------------------------------------------------------


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the records of a JSONL file; a torn last line (a writer killed mid-line) is skipped."""
    if not path.exists():
        return
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record


def load(folder: Path) -> History:
    """Read a recorded history folder."""
    meta_file = folder / "meta.json"
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    events = folder.parent / "data" / "events"
    return History(exchange=list(_jsonl(folder / "exchange.jsonl")),
                   states=list(_jsonl(folder / "failover_states.jsonl")),
                   timeline=list(_jsonl(folder / "timeline.jsonl")), meta=meta,
                   events_dir=events if events.is_dir() else None)


# -- the exchange's record -------------------------------------------------------------------------


def _orders(exchange: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Every order record, grouped by orderId, in journal order."""
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in exchange:
        if record.get("type") == "order":
            by_id[str(record["orderId"])].append(record)
    return by_id


def _is_trader_entry(first: dict[str, Any]) -> bool:
    return first.get("origin") == "api" and not first.get("reduceOnly")


def _check_unique_links(history: History, verdict: Verdict) -> None:
    owners: dict[str, set[str]] = defaultdict(set)
    for order_id, records in history.orders.items():
        link = records[0].get("orderLinkId")
        if link:
            owners[str(link)].add(order_id)
    for link, ids in owners.items():
        if len(ids) > 1:
            verdict.add(UNIQUE_LINK, orderLinkId=link, orderIds=sorted(ids))


# -- safe mode -------------------------------------------------------------------------------------


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def intervals_of(states: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The intervals in which entries were blocked (safe mode ON, trading disabled or HALT), in epoch ms."""
    return [{"startMs": _ms(i.start), "endMs": None if i.end is None else _ms(i.end), "reason": i.reason,
             "halted": i.halted, "operatorHalt": i.operator_halt, "fromVersion": i.from_version,
             "toVersion": i.to_version}
            for i in blocked_intervals(StateChange.from_dict(s) for s in states)]


def _grace_ms(history: History, at_ms: int) -> int:
    """How late an entry decided before safe mode may still reach the exchange after it: the propagation
    allowance of the run plus the REST latency the harness injected at that moment."""
    grace = int(history.meta.get("bounds", {}).get("entryGraceMs", 250))
    for fault in _faults_active(history, at_ms):
        params = fault.get("params") or {}
        if fault.get("faultKind") == "latency" and params.get("target", "rest") == "rest":
            grace += int(params.get("fixed_ms", 100)) + int(params.get("jitter_ms", 0))
        if fault.get("faultKind") == "ambiguous_submit" and params.get("mode") == "hang":
            grace += int(float(params.get("hold_s", 30.0)) * 1000)
    return grace


def _faults_active(history: History, at_ms: int) -> list[dict[str, Any]]:
    """Faults the harness had injected and not cleared at ``at_ms`` (from the timeline)."""
    active: dict[str, dict[str, Any]] = {}
    for event in history.timeline:
        if event["at"] > at_ms:
            break
        if event["kind"] == "fault":
            active[event["id"]] = event
        elif event["kind"] == "fault_clear":
            for fault_id in event.get("ids") or list(active):
                active.pop(fault_id, None)
    return [f for f in active.values()
            if f.get("durationS") is None or f["at"] + float(f["durationS"]) * 1000 > at_ms]


def _check_no_entry_in_safe_mode(history: History, verdict: Verdict, intervals: list[dict[str, Any]]) -> None:
    edge = 0
    for entry in history.entries:
        at = int(entry["ts"])
        for interval in intervals:
            start, end = interval["startMs"], interval["endMs"]
            if start <= at and (end is None or at < end):
                if at < start + _grace_ms(history, at):
                    edge += 1  # sent before the trader could know: counted, not a violation
                    break
                verdict.add(NO_ENTRY_IN_SAFE_MODE, orderLinkId=entry.get("orderLinkId"), orderId=entry["orderId"],
                            symbol=entry.get("symbol"), acceptedAtMs=at, safeModeFromMs=start, safeModeToMs=end,
                            reason=interval.get("reason"), halted=interval.get("halted"), order=entry)
                break
    verdict.metrics["entriesAtSafeModeEdge"] = edge


# -- positions -------------------------------------------------------------------------------------


def _check_one_entry_per_position(history: History, verdict: Verdict) -> None:
    """Replay the fills: an entry order that adds to a symbol's open position opened by another order stacks."""
    creator = {oid: recs[0].get("origin") for oid, recs in history.orders.items()}
    reduce_only = {oid: bool(recs[0].get("reduceOnly")) for oid, recs in history.orders.items()}
    size: dict[str, Decimal] = defaultdict(Decimal)
    opened_by: dict[str, set[str]] = defaultdict(set)
    largest: dict[str, Decimal] = defaultdict(Decimal)
    for record in history.exchange:
        if record.get("type") != "execution":
            continue
        symbol, order_id = record["symbol"], str(record.get("orderId", ""))
        qty = Decimal(str(record["execQty"])) * (1 if record["side"] == "Buy" else -1)
        before = size[symbol]
        after = before + qty
        grows = abs(after) > abs(before) and (before == ZERO or (before > ZERO) == (qty > ZERO))
        if grows and before != ZERO and order_id not in opened_by[symbol] \
                and creator.get(order_id) == "api" and not reduce_only.get(order_id, False):
            verdict.add(ONE_ENTRY_PER_POSITION, symbol=symbol, orderId=order_id,
                        orderLinkId=record.get("orderLinkId"), atMs=record.get("ts"),
                        positionBefore=str(before), positionAfter=str(after), openedBy=sorted(opened_by[symbol]),
                        openers=[_opener(history, oid) for oid in sorted(opened_by[symbol])],
                        timeline=_around(history, int(record.get("ts") or 0)),
                        traderEvents=_trader_events(history, symbol, int(record.get("ts") or 0)))
        if before == ZERO or (before > ZERO) != (after > ZERO):
            opened_by[symbol] = set()  # flat, or flipped: a new position starts here
        if after != ZERO and grows:
            opened_by[symbol].add(order_id)
        size[symbol] = after
        largest[symbol] = max(largest[symbol], abs(after))
    verdict.metrics["largestPosition"] = {s: str(q) for s, q in sorted(largest.items())}


def _opener(history: History, order_id: str) -> dict[str, Any]:
    """Who placed ``order_id`` and when: what an investigation of a stacked entry starts from."""
    first = history.orders.get(order_id, [{}])[0]
    return {key: first.get(key) for key in ("orderId", "orderLinkId", "origin", "orderType", "qty", "ts")}


EVIDENCE_WINDOW_MS = 30_000  # what led up to a stacked entry: the acts and the trader's events this long before


def _before(at: int, at_ms: int) -> bool:
    return at_ms - EVIDENCE_WINDOW_MS <= at <= at_ms + 1_000


def _around(history: History, at_ms: int) -> list[dict[str, Any]]:
    """The run's acts (kills, restarts, changes behind the back) in the window before ``at_ms``."""
    return [e for e in history.timeline if _before(int(e.get("at", 0)), at_ms)][-EVIDENCE_KEPT:]


# What the trader wrote about orders, positions, state reloads and its role: the story of a stacked entry.
EVIDENCE_EVENTS = frozenset({
    "ORDER_REQUEST", "ORDER_REJECTED", "FILL", "POSITION_UPDATE", "POSITION_CLOSED", "POSITION_RESYNC",
    "EXTERNAL_POSITION_RECOVERED", "INTENT_RESOLVED", "ORDER_FOUND_ON_EXCHANGE", "RESYNC", "COMMAND",
    "TRADER_STARTED", "LEASE_ACQUIRED", "LEASE_LOST", "FAILURE",
})


def _trader_events(history: History, symbol: str, at_ms: int) -> list[dict[str, Any]]:
    """The trader's own events on ``symbol`` and the system's in the window before ``at_ms`` (newest kept)."""
    if history.events_dir is None:
        return []
    found = []
    for name in (f"{symbol}.jsonl", "_SYSTEM.jsonl"):
        for event in _jsonl(history.events_dir / name):
            at = event.get("tsMs")
            if isinstance(at, int) and _before(at, at_ms) and event.get("event") in EVIDENCE_EVENTS:
                found.append({k: v for k, v in event.items() if k not in ("ts", "runId")})
    found.sort(key=lambda e: e["tsMs"])
    return found[-2 * EVIDENCE_KEPT:]


# -- checkpoints, liveness -------------------------------------------------------------------------


def _check_checkpoints(history: History, verdict: Verdict) -> None:
    checkpoints = [e for e in history.timeline if e["kind"] == "checkpoint"]
    for point in checkpoints:
        if not point.get("agreed"):
            verdict.add(LOCAL_EQUALS_EXCHANGE, atMs=point["at"], phase=point.get("phase"), local=point.get("local"),
                        exchange=point.get("exchange"))
    verdict.metrics["checkpoints"] = len(checkpoints)


def _percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))]


def _check_safe_mode_ends(history: History, verdict: Verdict, intervals: list[dict[str, Any]]) -> None:
    """After each all-clear (the last fault cleared, or a trader restarted), safe mode is off within the bound
    and stays off until the next disturbance (a safe mode that the restart's own report turns on counts too)."""
    bound_ms = float(history.meta.get("bounds", {}).get("livenessS", 60)) * 1000
    clears = [e for e in history.timeline
              if e["kind"] == "all_clear" or (e["kind"] == "restart" and e.get("target") == "trader")]
    disturbances = sorted(e["at"] for e in history.timeline if e["kind"] in ("storm", "kill"))
    end_ms = max([e["at"] for e in history.timeline] or [0])
    waits = []
    for clear in clears:
        at = clear["at"]
        horizon = next((d for d in disturbances if d > at), end_ms)
        overlapping = [i for i in intervals if i["startMs"] < horizon and (i["endMs"] is None or i["endMs"] > at)]
        still_on = [i for i in overlapping if i["endMs"] is None or i["endMs"] > horizon]
        if still_on:
            if horizon - at > bound_ms:  # the run gave it the time and it did not end
                verdict.add(SAFE_MODE_ENDS, clearedAtMs=at, stillOnAtMs=horizon, boundMs=bound_ms,
                            after=clear["kind"], reason=still_on[0].get("reason"),
                            activeFailures=_active_at(history, horizon))
            continue
        waited = max([i["endMs"] for i in overlapping] or [at]) - at
        waits.append(waited)
        if waited > bound_ms:
            verdict.add(SAFE_MODE_ENDS, clearedAtMs=at, offAtMs=at + waited, waitedMs=waited, boundMs=bound_ms,
                        after=clear["kind"], reason=overlapping[-1].get("reason"))
    verdict.metrics["clearToSafeModeOffMs"] = {"count": len(waits), "p50": _percentile(waits, 50),
                                               "max": max(waits) if waits else None}


def _active_at(history: History, at_ms: int) -> list[str] | None:
    last = None
    for state in history.states:
        if _ms(StateChange.from_dict(state).at) <= at_ms:
            last = state
    return None if last is None else last.get("activeFailures")


def _check_restarts(history: History, verdict: Verdict) -> None:
    bound_ms = float(history.meta.get("bounds", {}).get("restartS", 30)) * 1000
    times = []
    for event in history.timeline:
        if event["kind"] == "restart" and event.get("target") == "trader":
            running = event.get("runningAfterMs")
            if running is None or running > bound_ms:
                verdict.add(RESTART_RUNNING, restartedAtMs=event["at"], runningAfterMs=running, boundMs=bound_ms)
            if running is not None:
                times.append(running)
    verdict.metrics["restartToRunningMs"] = {"count": len(times), "p50": _percentile(times, 50),
                                             "p99": _percentile(times, 99)}


def _check_trades_again(history: History, verdict: Verdict) -> None:
    disturbances = [e["at"] for e in history.timeline if e["kind"] in ("all_clear", "restart")]
    if not disturbances:
        return
    last = max(disturbances)
    after = [e for e in history.entries if int(e["ts"]) >= last]
    if not after:
        verdict.add(TRADES_AGAIN, lastDisturbanceMs=last, entriesAfter=0)


def check(history: History) -> Verdict:
    """Judge a recorded run: every invariant, with evidence, and the run's figures."""
    verdict = Verdict()
    intervals = intervals_of(history.states)
    _check_unique_links(history, verdict)
    _check_no_entry_in_safe_mode(history, verdict, intervals)
    _check_one_entry_per_position(history, verdict)
    _check_checkpoints(history, verdict)
    _check_safe_mode_ends(history, verdict, intervals)
    _check_restarts(history, verdict)
    _check_trades_again(history, verdict)
    kinds = [e.get("how") for e in history.timeline if e["kind"] == "kill"]
    verdict.metrics.update(
        entries=len(history.entries),
        kills=len(kinds),
        killsByHow={how: kinds.count(how) for how in sorted({str(k) for k in kinds})},
        killsWithWorker=sum(1 for e in history.timeline if e["kind"] == "kill" and e.get("worker")),
        restarts=sum(1 for e in history.timeline if e["kind"] == "restart" and e.get("target") == "trader"),
        safeModeEpisodes=len(intervals),
        safeModeEpisodesStillOn=sum(1 for i in intervals if i["endMs"] is None),
        faults=len([e for e in history.timeline if e["kind"] == "fault"]),
        behindTheBack=len([e for e in history.timeline if e["kind"] == "behind_back"]),
        exchangeRecords=len(history.exchange),
        stateChanges=len(history.states),
    )
    verdict.metrics["violations"] = verdict.counts()
    return verdict
