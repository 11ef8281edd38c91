"""Stand-ins for what the trader reaches in other apps: the failover gate it reads, the control it writes to."""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Gate:
    """The failover state as ``failover_gate`` returns it (the fields the trader's link reads)."""

    safe_mode: bool = False
    reason: str | None = None
    version: int = 1
    trading_enabled: bool = True
    recovery_in_progress: bool = False


class Control:
    """The heartbeat store and command bus (Redis in the product): keeps every heartbeat, expects no command."""

    def __init__(self) -> None:
        self.beats: list[dict] = []

    def write_heartbeat(self, beat: dict, *, run_id: str = "") -> None:
        self.beats.append(json.loads(json.dumps(beat)))

    def write_ack(self, command_id: str, **kwargs) -> None:
        raise AssertionError("no command is sent in this test")


class AckingControl:
    """The command bus (Redis in the product) for tests of command handlers: keeps every ack, expects no heartbeat."""

    def __init__(self) -> None:
        self.acks: list[tuple[str, dict]] = []

    def write_heartbeat(self, beat: dict, *, run_id: str = "") -> None:
        raise AssertionError("no heartbeat in these tests")

    def write_ack(self, command_id: str, **kwargs) -> None:
        self.acks.append((command_id, kwargs))
