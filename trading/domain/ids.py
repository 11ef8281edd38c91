"""Client order ids (Bybit ``orderLinkId``) unique across processes and restarts.

Shape: ``AISCLP-YYYYMMDD-<instance>-<counter>``, e.g.
``AISCLP-20251118-mi4x2k1c00abc-1``:

- ``YYYYMMDD`` is the UTC date of the trading clock when the id is made;
- ``instance`` is 13 base36 characters: the process start time in ms (8) and
  the pid (5). Two processes on one host differ by pid, a restart differs by
  start time. It deliberately comes from the real wall clock, not the trading
  clock: a replay or simulation clock starts at the same instant every run and
  would repeat ids;
- ``counter`` counts up in base36 within the process.

Ids are at most 36 characters of ``[A-Za-z0-9_-]``, Bybit's limit.
"""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime

from failover.domain.clock import Clock

MAX_LEN = 36
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_]{1,6}$")
_INSTANCE_RE = re.compile(r"^[a-z0-9]{1,13}$")


def base36(value: int, width: int = 0) -> str:
    """Return ``value`` (>= 0) in lower-case base36, left-padded with zeros to ``width``."""
    if value < 0:
        raise ValueError("base36 takes non-negative integers")
    out = ""
    while True:
        value, digit = divmod(value, 36)
        out = _DIGITS[digit] + out
        if value == 0:
            break
    return out.rjust(width, "0")


def default_instance() -> str:
    """Return this process's instance tag: wall-clock start ms (8) + pid (5), base36."""
    start_ms = time.time_ns() // 1_000_000
    return base36(start_ms % 36**8, 8) + base36(os.getpid() % 36**5, 5)


class OrderLinkIdFactory:
    """Make ``orderLinkId`` values; one factory per process."""

    def __init__(self, clock: Clock, prefix: str = "AISCLP", instance: str | None = None) -> None:
        if not _PREFIX_RE.match(prefix):
            raise ValueError(f"prefix must be 1-6 characters of [A-Za-z0-9_], got {prefix!r}")
        instance = default_instance() if instance is None else instance
        if not _INSTANCE_RE.match(instance):
            raise ValueError(f"instance must be 1-13 characters of [a-z0-9], got {instance!r}")
        self._clock = clock
        self.prefix = prefix
        self.instance = instance
        self._counter = 0

    def next_id(self) -> str:
        """Return a new, never repeated id."""
        self._counter += 1
        day = datetime.fromtimestamp(self._clock.now_ms() // 1000, tz=UTC).strftime("%Y%m%d")
        link_id = f"{self.prefix}-{day}-{self.instance}-{base36(self._counter)}"
        if len(link_id) > MAX_LEN:
            raise OverflowError(f"order id counter exhausted for instance {self.instance}")
        return link_id
