"""What an alert is, and which alerts go out: dedupe by (type, symbol), a rate per type, a level per sink.

The policy is pure; the sinks (database row, dashboard push, webhook, Telegram,
email) live at the edges and ask it before sending. An alert of a higher level
than the one last sent under the same key always passes the dedupe, so a WARN
never hides the CRIT that follows it. Everything comes from the config's
``alerts`` section, and ``apply_config`` takes a new one at a hot reload.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from trading.domain.config import AlertsConfig


class AlertLevel(StrEnum):
    INFO = "INFO"
    WARN = "WARN"
    CRIT = "CRIT"


_RANK = {AlertLevel.INFO: 0, AlertLevel.WARN: 1, AlertLevel.CRIT: 2}
RATE_WINDOW_MS = 60_000


def level_rank(level: str) -> int:
    """Return the order of ``level`` (INFO < WARN < CRIT); ValueError for anything else."""
    return _RANK[AlertLevel(level)]


@dataclass(frozen=True)
class AlertMessage:
    """One alert: a stable ``type``, a level, a sentence for people and details for machines."""

    level: str
    type: str
    message: str
    symbol: str = ""
    details: dict[str, Any] = field(default_factory=dict)  # JSON values only: it is stored and posted as is
    run_id: str = ""  # the environment: empty for the product, an integration run's id otherwise

    def to_dict(self) -> dict[str, Any]:
        """Return the fields a sink shows (the run id travels beside them)."""
        return {
            "level": self.level,
            "type": self.type,
            "message": self.message,
            "symbol": self.symbol,
            "details": self.details,
        }


AlertRaiser = Callable[[AlertMessage], None]
"""Raise one alert; the edge behind it stores and sends it and never raises back."""


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

    def __init__(self) -> None:
        self.last_sent_ms: int | None = None  # None: held back by the rate limit before it was ever sent
        self.last_level = AlertLevel.INFO
        self.suppressed = 0


class AlertPolicy:
    """Decide whether an alert is sent or suppressed, and which sinks it goes to."""

    def __init__(self, config: AlertsConfig) -> None:
        self._keys: dict[tuple[str, str | None], _KeyState] = {}
        self._sent_by_type: dict[str, deque[int]] = {}
        self.suppressed_total = 0
        self.rate_limited_total = 0
        self.apply_config(config)

    def apply_config(self, config: AlertsConfig) -> None:
        """Take new windows, rate, sink levels and muted types (counts and history are kept)."""
        self._window_ms = int(config.dedupe_window_s * 1000)
        self._crit_window_ms = int(config.crit_dedupe_window_s * 1000)
        self._per_minute = config.max_per_type_per_minute
        self._floors: dict[str, str] = config.min_level.model_dump()
        self._muted = frozenset(config.muted_types)

    def check(self, alert: AlertLike, now_ms: int) -> int | None:
        """Return None to suppress ``alert``, or the number of its key's alerts suppressed since the last send."""
        level = AlertLevel(alert.level)
        state = self._keys.setdefault(alert_key(alert), _KeyState())
        if self._is_repeat(state, level, now_ms):
            self._suppress(state)
            return None
        if self._over_rate(alert.type, now_ms):
            self.rate_limited_total += 1
            self._suppress(state)
            return None
        carried = state.suppressed
        state.last_sent_ms, state.last_level, state.suppressed = now_ms, level, 0
        return carried

    def delivers(self, alert: AlertLike, sink: str) -> bool:
        """Tell whether an alert that passed ``check`` goes to the outside sink named ``sink``."""
        if alert.type in self._muted:
            return False
        floor = self._floors.get(sink)
        return floor is None or level_rank(alert.level) >= level_rank(floor)

    def _is_repeat(self, state: _KeyState, level: AlertLevel, now_ms: int) -> bool:
        if state.last_sent_ms is None:
            return False
        if _RANK[level] > _RANK[state.last_level]:
            return False  # an escalation always goes out
        window = self._crit_window_ms if level is AlertLevel.CRIT else self._window_ms
        return now_ms - state.last_sent_ms < window

    def _over_rate(self, alert_type: str, now_ms: int) -> bool:
        """Tell whether ``alert_type`` used its sends of the last minute; count this send when it did not."""
        if self._per_minute == 0:
            return False
        sent = self._sent_by_type.setdefault(alert_type, deque())
        while sent and now_ms - sent[0] >= RATE_WINDOW_MS:
            sent.popleft()
        if len(sent) >= self._per_minute:
            return True
        sent.append(now_ms)
        return False

    def _suppress(self, state: _KeyState) -> None:
        state.suppressed += 1
        self.suppressed_total += 1
