"""What the trader needs of the outside: the FailoverManager's service API, the control channel, the alerts.

The trader is handed them at construction (``run_trader`` resolves them from
settings), so the trading app never imports the failover app: it knows these
shapes, and ``failover.services``, ``trading.control`` and ``trading.alerts`` happen to fit them.
What the link needs (``FailoverLinkServices``, ``FailoverView``) is defined beside
``FailoverLink`` in the engine and named here too, so the trader's seams are in one place.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from trading.domain.alerts import AlertMessage
from trading.domain.config import AlertsConfig
from trading.engine.failover_link import FailoverLinkServices, FailoverView

__all__ = ["FailoverLinkServices", "FailoverServices", "FailoverView", "TraderAlerts", "TraderControl"]


@runtime_checkable
class FailoverServices(FailoverLinkServices, Protocol):
    """What the trader calls: what its ``FailoverLink`` needs, plus registering its environment at start."""

    def environment_register(self, *, run_id: str = "", context: dict[str, Any]) -> None: ...


@runtime_checkable
class TraderControl(Protocol):
    """Where the trader leaves its heartbeat and its command acknowledgements for other processes."""

    def write_heartbeat(self, beat: dict[str, Any], *, run_id: str = "", standby: str = "") -> None: ...

    def write_ack(
        self,
        command_id: str,
        *,
        ok: bool,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        run_id: str = "",
    ) -> None: ...


@runtime_checkable
class TraderAlerts(Protocol):
    """Where the trader's alerts go (stored, then sent on without waiting), and the config they follow."""

    def alert_raise(self, alert: AlertMessage) -> None: ...

    def alerts_configure(self, *, run_id: str, config: AlertsConfig) -> None: ...
