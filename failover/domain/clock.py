"""The one clock of the domain: the wall clock and a manual clock for tests.

Every engine that needs "now" takes a ``Clock`` in its constructor, so replay,
simulation and tests drive time explicitly and nothing reads the wall clock
behind the caller's back. A clock tells epoch milliseconds (the hot path's unit)
and, from the same reading, an aware UTC datetime (the failover records' unit).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

MS_PER_DAY = 86_400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Clock(Protocol):
    """Tell the current time as integer milliseconds since the Unix epoch (UTC), or as a UTC datetime."""

    def now_ms(self) -> int: ...

    def now(self) -> datetime: ...

    def monotonic_ms(self) -> int:
        """Tell milliseconds on a clock that never steps back (for ages and deadlines, not for dates)."""
        ...


class SystemClock:
    """Read the machine's wall clock."""

    __slots__ = ()

    def now_ms(self) -> int:
        """Return the wall-clock time in epoch milliseconds."""
        return time.time_ns() // 1_000_000

    def now(self) -> datetime:
        """Return the wall-clock time as an aware UTC datetime."""
        return datetime.now(tz=UTC)

    def monotonic_ms(self) -> int:
        """Return the machine's monotonic clock in milliseconds (unaffected by wall-clock steps)."""
        return time.monotonic_ns() // 1_000_000


class ManualClock:
    """Hold a time that only moves when told to (tests, replay)."""

    __slots__ = ("_now_ms",)

    def __init__(self, start_ms: int = 0) -> None:
        self._now_ms = int(start_ms)

    @classmethod
    def at(cls, moment: datetime) -> ManualClock:
        """Return a clock held at ``moment`` (to the millisecond), e.g. to stamp several values with one instant."""
        return cls(to_epoch_ms(moment))

    def now_ms(self) -> int:
        """Return the held time."""
        return self._now_ms

    def monotonic_ms(self) -> int:
        """Return the held time: it only moves when told to, so it never steps back unless set back."""
        return self._now_ms

    def now(self) -> datetime:
        """Return the held time as an aware UTC datetime."""
        return from_epoch_ms(self._now_ms)

    def set(self, now_ms: int) -> None:
        """Jump to ``now_ms``."""
        self._now_ms = int(now_ms)

    def advance(self, delta_ms: int) -> int:
        """Move forward by ``delta_ms`` and return the new time."""
        self._now_ms += int(delta_ms)
        return self._now_ms


def from_epoch_ms(ts_ms: int) -> datetime:
    """Return epoch milliseconds as an aware UTC datetime (exact: no float rounding)."""
    return _EPOCH + timedelta(milliseconds=ts_ms)


def to_epoch_ms(moment: datetime) -> int:
    """Return an aware datetime as epoch milliseconds, truncated (exact: no float rounding)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def utc_day(ts_ms: int) -> int:
    """Return the UTC day number (days since the epoch) of ``ts_ms``."""
    return ts_ms // MS_PER_DAY


def iso_ms(ts_ms: int) -> str:
    """Format epoch milliseconds as the contract's ISO form, e.g. ``2025-11-18T15:20:30.000Z``."""
    dt = datetime.fromtimestamp(ts_ms // 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"
