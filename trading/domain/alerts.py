"""Which alerts go out: dedupe by (type, symbol) and throttle repeats.

The policy is pure; the sinks (database row, channel layer, webhook) live at
the edges and ask ``check`` before sending. An alert of a higher level than the
one last sent under the same key always goes out, so a WARN never hides the
CRIT that follows it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from trading.domain.config import AlertsConfig


class AlertLevel(StrEnum):
    INFO = "INFO"
    WARN = "WARN"
    CRIT = "CRIT"


_RANK = {AlertLevel.INFO: 0, AlertLevel.WARN: 1, AlertLevel.CRIT: 2}


class AlertLike(Protocol):
    """Any alert object the policy can judge (each edge brings its own message type)."""

    @property
    def level(self) -> str: ...

    @property
    def type(self) -> str: ...

    @property
    def symbol(self) -> str | None: ...


def alert_key(alert: AlertLike) -> tuple[str, str | None]:
    """Return the dedupe key (type, symbol); an empty symbol counts as none."""
    return (alert.type, alert.symbol or None)


class _KeyState:
    __slots__ = ("last_sent_ms", "last_level", "suppressed")

    def __init__(self, now_ms: int, level: AlertLevel) -> None:
        self.last_sent_ms = now_ms
        self.last_level = level
        self.suppressed = 0


class AlertPolicy:
    """Decide whether an alert is sent or suppressed as a duplicate."""

    def __init__(self, config: AlertsConfig) -> None:
        self._keys: dict[tuple[str, str | None], _KeyState] = {}
        self.suppressed_total = 0
        self.apply_config(config)

    def apply_config(self, config: AlertsConfig) -> None:
        """Take new throttle windows."""
        self._window_ms = int(config.dedupe_window_s * 1000)
        self._crit_window_ms = int(config.crit_dedupe_window_s * 1000)

    def check(self, alert: AlertLike, now_ms: int) -> int | None:
        """Return None to suppress ``alert``, or the number of duplicates suppressed since the last send."""
        key = alert_key(alert)
        level = AlertLevel(alert.level)
        state = self._keys.get(key)
        if state is None:
            self._keys[key] = _KeyState(now_ms, level)
            return 0
        window = self._crit_window_ms if level is AlertLevel.CRIT else self._window_ms
        escalates = _RANK[level] > _RANK[state.last_level]
        if not escalates and now_ms - state.last_sent_ms < window:
            state.suppressed += 1
            self.suppressed_total += 1
            return None
        carried = state.suppressed
        state.last_sent_ms = now_ms
        state.last_level = level
        state.suppressed = 0
        return carried
