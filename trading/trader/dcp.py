"""Bybit's Disconnection Cancel All, armed by the leader where the account has it.

With ``exchange.dcp_window_s`` set, the leader asks the exchange whether the
account has DCP (``query-dcp-info``); if so it sets the DERIVATIVES window and its
private stream subscribes ``dcp.future``, so the exchange cancels every order once
all of the leader's private connections have been gone for the window. Arming
runs again at every (re)build of the private stream (a takeover, a reconnect). An
account without DCP (every retail one) is said so in health, and the private
stream never asks for the topic: Bybit refuses it, and a refused subscription
kills pybit's stream. The dead-man guardian protects such an account.

A hot reload of the window is applied by ``due``: a new window on an armed
account is only set (the topic is already on the connection); a window set where
none was armed asks for a rebuild of the private stream (the bounded build arms
and subscribes); a window unset leaves DCP armed for the rest of the process (its
private connections keep the topic), because dropping the last ``dcp.future``
subscription is what makes the exchange cancel every order; the next start does
not arm it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from trading.exchange.lease import AccountLease
from trading.exchange.port import DcpPort, ExchangeError

logger = logging.getLogger("scalper.trader")

TOPIC = "dcp.future"
NOT_CONFIGURED = "NOT_CONFIGURED"  # exchange.dcp_window_s is not set
STANDBY = "STANDBY"  # only the leader arms it
NO_DCP = "ACCOUNT_HAS_NO_DCP"  # the retail answer: the dead-man guardian protects the account
UNREACHABLE = "EXCHANGE_ERROR"
UNSET_KEPT = "UNSET_KEPT_ARMED"  # the window was unset while armed: armed until this process stops
DRY_RUN = "DRY_RUN"  # a dry run changes nothing on the account

# What ``due`` asks of the trader.
NOTHING, SET, REBUILD = "NOTHING", "SET", "REBUILD"

EXPLAINED = {
    NOT_CONFIGURED: "exchange.dcp_window_s is not set: DCP not configured",
    STANDBY: "a standby arms nothing: the leader arms DCP",
    DRY_RUN: "a dry run changes nothing on the account",
    UNSET_KEPT: "exchange.dcp_window_s was unset: DCP stays armed until this trader stops (dropping the topic "
                "would make the exchange cancel every order); the next start does not arm it",
}


@dataclass(frozen=True)
class DcpStatus:
    armed: bool = False
    window_s: int | None = None
    supported: bool | None = None  # None: not asked yet
    reason: str = NOT_CONFIGURED

    def as_json(self) -> dict[str, Any]:
        """Health's and the heartbeat's ``dcp`` object."""
        return {"armed": self.armed, "windowS": self.window_s, "supported": self.supported, "reason": self.reason}


def health_json(status: DcpStatus, *, deadman_after_s: float) -> dict[str, Any]:
    """``status.as_json()`` with the reason spelled out (its code first): what health and the heartbeat show."""
    view = status.as_json()
    code = status.reason.split(":", 1)[0]
    if code == NO_DCP:
        view["reason"] = (f"{NO_DCP}: the account has no DCP; the product relies on the dead-man guardian "
                          f"(deadman.after_s {deadman_after_s:g} s)")
    elif status.reason in EXPLAINED:
        view["reason"] = f"{status.reason}: {EXPLAINED[status.reason]}"
    return view


class FencedDcp:
    """``DcpPort`` whose setting proves the account lease first (``LeaseLost``, an ``ExchangeError``: not sent)."""

    def __init__(self, inner: DcpPort, lease: AccountLease) -> None:
        self._inner = inner
        self._lease = lease

    def dcp_window_s(self) -> int | None:
        return self._inner.dcp_window_s()

    def set_dcp(self, window_s: int) -> None:
        self._lease.ensure(f"DCP window {window_s}s")
        self._inner.set_dcp(window_s)


class DcpArming:
    """Arms DCP and adds ``dcp.future`` to the private subscriptions when armed."""

    def __init__(self, port: DcpPort, *, window_s: Callable[[], int | None], is_leader: Callable[[], bool]) -> None:
        self._port = port
        self._window_s = window_s
        self._is_leader = is_leader
        self._lock = threading.Lock()
        self.status = DcpStatus()

    def arm(self) -> DcpStatus:
        """Ask, then set the window; never raises (the reason says what stood in the way)."""
        with self._lock:
            self.status = self._arm()
        if self.status.armed:
            logger.info("DCP armed: %ss", self.status.window_s)
        elif self.status.reason not in (NOT_CONFIGURED, STANDBY):
            logger.warning("DCP not armed (%s): the dead-man guardian protects the account", self.status.reason)
        return self.status

    def _arm(self) -> DcpStatus:
        window = self._window_s()
        if window is None:
            return replace(self.status, reason=UNSET_KEPT) if self.status.armed else DcpStatus()
        if not self._is_leader():
            return DcpStatus(window_s=window, supported=self.status.supported, reason=STANDBY)
        try:
            if self._port.dcp_window_s() is None:
                return DcpStatus(window_s=window, supported=False, reason=NO_DCP)
            self._port.set_dcp(window)
        except ExchangeError as exc:
            return DcpStatus(window_s=window, supported=self.status.supported, reason=f"{UNREACHABLE}: {exc}")
        if not self._is_leader():  # stepped down during the calls: the closed stream's status is not ours
            return DcpStatus(window_s=window, supported=True, reason=STANDBY)
        return DcpStatus(armed=True, window_s=window, supported=True, reason="")

    def stand_by(self) -> DcpStatus:
        """Stepped down: nothing armed by this trader any more (its private stream is closed); no exchange call."""
        window = self._window_s()
        self.status = DcpStatus(window_s=window, supported=self.status.supported,
                                reason=STANDBY if window is not None else NOT_CONFIGURED)
        return self.status

    def due(self, *, reloaded: bool) -> str:
        """What the leader must do for the configured window: ``NOTHING``, ``SET`` (``arm`` off the pipeline) or
        ``REBUILD`` (the private stream: its build arms and subscribes). ``reloaded``: the config just changed;
        otherwise only an arming that failed on an exchange error is tried again."""
        window, status = self._window_s(), self.status
        if not reloaded:
            return REBUILD if window is not None and status.reason.startswith(UNREACHABLE) else NOTHING
        if window == status.window_s and (status.armed or status.reason == NO_DCP):
            return NOTHING
        if status.armed or window is None:
            return SET  # a new window on the live topic, or the unset kept armed (no exchange call)
        return REBUILD

    def subscriber(self, base: Callable[[Any], None]) -> Callable[[Any], None]:
        """Wrap the private stream's subscriber: arm at every build, and subscribe ``dcp.future`` when armed."""

        def subscribe(socket: Any) -> None:
            base(socket)
            if self.arm().armed:
                socket.subscribe(topic=TOPIC, callback=_ignore, symbol="")  # symbol "": pybit formats no name in

        return subscribe


def _ignore(_: Any) -> None:
    return None
