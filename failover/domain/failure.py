"""The failure event: what a detector reports, the FailoverManager stores and the black box remembers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from failover.domain import _codec as c
from failover.domain.enums import FailureType


@dataclass(frozen=True, slots=True)
class FailureEvent:
    """One failure, as the detectors report it and the FailoverManager stores it."""

    timestamp: datetime
    type: FailureType
    source: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        c.assign(self, "timestamp", c.to_ms(self.timestamp, "timestamp"))
        c.assign(self, "type", c.enum(FailureType, self.type, "type"))
        # A FailureSource member becomes its plain value so unknown sources compare alike.
        c.assign(self, "source", str(c.string(self.source, "source")))
        c.assign(self, "message", c.string(self.message, "message"))
        c.assign(self, "details", c.details(self.details, "details"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "timestamp": c.format_ts(self.timestamp),
            "type": self.type.value,
            "source": self.source,
            "message": self.message,
            "details": c.details(self.details, "details"),
        }

    @classmethod
    def from_dict(cls, data: Any, path: str = "") -> FailureEvent:
        def build() -> FailureEvent:
            d = c.obj(data, "")
            return cls(
                timestamp=c.parse_ts(c.field(d, "timestamp", ""), "timestamp"),
                type=c.field(d, "type", ""),
                source=c.field(d, "source", ""),
                message=c.field(d, "message", ""),
                details=c.opt(d, "details", {}),
            )

        return c.read(path, build)
