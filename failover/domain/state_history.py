"""The failover state's history read as intervals: when entries were blocked, and why.

An environment's state changes version by version; entries are blocked while
safe mode is ON, trading is disabled (DISABLE_TRADING) or an operator's HALT is
in force. ``blocked_intervals``
turns a list of changes into the maximal intervals of that condition, so the
service's read side and an offline checker (which may read the history API's
``items`` with ``StateChange.from_dict``) compute them the same way.

Rules:

- Changes are taken in version order; the version, not the time, orders them.
- An interval starts at the first blocked change after an unblocked one (or at
  the first change of the history, if it is blocked) and ends at the ``at`` of
  the change that lifts it. ``from_version`` .. ``to_version`` are the blocked
  versions it spans, both included; ``end`` is None while it is still on at the
  end of what was given.
- ``reason`` is the first reason recorded in the interval (the state's reason may
  change inside one, e.g. a second failure merging into the plan); a version
  blocked by a HALT alone gives ``HALT``. ``halted`` is true when trading was
  disabled at any version of it, ``operator_halt`` when a HALT was in force at
  any version of it.
- A window: changes after ``until`` are left out, and of the changes at or
  before ``since`` only the last counts (the state in force at ``since``); an
  interval already on at ``since`` starts at ``since``. A window whose ``since``
  is after its ``until`` is empty.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from typing import Any

from failover.domain._codec import boolean, field, format_opt_ts, format_ts, integer, obj, opt, parse_ts, string

__all__ = ["HALT", "BlockedInterval", "StateChange", "blocked_intervals", "in_window"]

HALT = "HALT"  # the reason of a version blocked by an operator's HALT alone


@dataclass(frozen=True, slots=True)
class StateChange:
    """One committed version of an environment's failover state, as far as blocking entries goes."""

    version: int
    at: datetime
    safe_mode: bool
    trading_enabled: bool
    reason: str | None = None
    halted: bool = False  # an operator's HALT in force

    @property
    def blocked(self) -> bool:
        """Whether entries are refused at this version: safe mode ON, trading disabled or a HALT."""
        return self.safe_mode or not self.trading_enabled or self.halted

    @property
    def blocked_by(self) -> str | None:
        """Why entries are refused at this version: the state's reason, ``HALT`` for a HALT alone, or None."""
        if self.safe_mode or not self.trading_enabled:
            return self.reason
        return HALT if self.halted else None

    @classmethod
    def from_dict(cls, data: Any) -> StateChange:
        """Read one item of the history API: ``version``, ``at``, ``safeMode``, ``tradingEnabled``, ``reason``,
        ``halted`` (absent in an older history: not halted)."""
        item = obj(data, "")
        reason = opt(item, "reason")
        halted = opt(item, "halted")
        return cls(
            version=integer(field(item, "version", ""), "version", minimum=0),
            at=parse_ts(field(item, "at", ""), "at"),
            safe_mode=boolean(field(item, "safeMode", ""), "safeMode"),
            trading_enabled=boolean(field(item, "tradingEnabled", ""), "tradingEnabled"),
            reason=None if reason is None else string(reason, "reason", allow_empty=True),
            halted=False if halted is None else boolean(halted, "halted"),
        )


@dataclass(frozen=True, slots=True)
class BlockedInterval:
    """A maximal stretch of versions during which entries were blocked."""

    start: datetime
    end: datetime | None  # None: still on at the last change given
    reason: str | None
    from_version: int
    to_version: int
    halted: bool  # trading was disabled at some version of it (not only safe mode)
    operator_halt: bool = False  # an operator's HALT was in force at some version of it

    def to_dict(self) -> dict[str, Any]:
        """Return the API's camelCase shape (times as ``2025-11-18T15:20:30.000Z``)."""
        return {"start": format_ts(self.start), "end": format_opt_ts(self.end), "reason": self.reason,
                "fromVersion": self.from_version, "toVersion": self.to_version, "halted": self.halted,
                "operatorHalt": self.operator_halt}


def in_window(changes: Iterable[StateChange], *, since: datetime | None = None,
              until: datetime | None = None) -> list[StateChange]:
    """Return the changes describing ``[since, until]`` by version: the one in force at ``since``, then later ones."""
    if since is not None and until is not None and since > until:
        return []  # an empty window
    ordered = sorted((c for c in changes if until is None or c.at <= until), key=lambda c: c.version)
    if since is None:
        return ordered
    before = [c for c in ordered if c.at <= since]
    return before[-1:] + [c for c in ordered if c.at > since]


def blocked_intervals(changes: Iterable[StateChange], *, since: datetime | None = None,
                      until: datetime | None = None) -> list[BlockedInterval]:
    """Return the maximal intervals, oldest first, in which safe mode was ON, trading disabled or a HALT on."""
    runs = [(blocked, list(group)) for blocked, group in groupby(in_window(changes, since=since, until=until),
                                                                key=lambda c: c.blocked)]
    intervals = []
    for index, (blocked, group) in enumerate(runs):
        if not blocked:
            continue
        lifted = runs[index + 1][1][0] if index + 1 < len(runs) else None
        start = group[0].at if since is None else max(group[0].at, since)
        intervals.append(BlockedInterval(
            start=start,
            end=None if lifted is None else lifted.at,
            reason=next((why for why in (c.blocked_by for c in group) if why is not None), None),
            from_version=group[0].version,
            to_version=group[-1].version,
            halted=any(not c.trading_enabled for c in group),
            operator_halt=any(c.halted for c in group),
        ))
    return intervals

