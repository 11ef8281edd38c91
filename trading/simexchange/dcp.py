"""Bybit's Disconnection Cancel All (DCP), as the simulated account has it.

``POST /v5/order/disconnected-cancel-all`` sets a product's window (3 to 300 s;
``product`` defaults to ``OPTIONS`` as on Bybit), ``GET /v5/account/query-dcp-info``
reads the settings. A private connection that subscribes ``dcp.future`` arms the
watch; when every such connection has been gone (closed, or silent for
``HEARTBEAT_TIMEOUT_S``) for the DERIVATIVES window, every open order of the
account (all linear here) is cancelled with ``cancelType`` ``CancelByDCP``, origin
``dcp``, once; a new subscription arms it again. An account told it has no DCP
(``POST /sim/dcp``, Bybit's retail answer) is refused the setting, reads empty
infos and cannot subscribe the topics. Pure Python: the clock comes in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import errors as E

PRODUCTS = ("OPTIONS", "DERIVATIVES", "SPOT")
DEFAULT_PRODUCT = "OPTIONS"
DEFAULT_WINDOW_S = 10  # Bybit's default once an account manager enables DCP
MIN_WINDOW_S, MAX_WINDOW_S = 3, 300
TOPICS = frozenset({"dcp.future", "dcp.spot", "dcp.option"})
FUTURE_TOPIC = "dcp.future"
HEARTBEAT_TIMEOUT_S = 30.0  # a connection that sent nothing for this long counts as gone (pybit pings every 20 s)
CANCEL_BY_DCP = "CancelByDCP"


@dataclass
class DcpWatch:
    """The account's DCP settings and the derivatives watch; ``check`` says when to cancel."""

    enabled: bool = True
    windows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PRODUCTS, DEFAULT_WINDOW_S))
    armed: bool = False  # a dcp.future connection was seen since the last trigger
    last_alive: float = 0.0
    triggered: int = 0

    def set_window(self, product: str | None, window: int) -> None:
        """Apply the REST setting; raise Bybit's error for a refused one (nothing changes)."""
        if not self.enabled:
            raise E.ExchangeError(E.PERMISSION_DENIED, "Permission denied, please check your API key permissions.")
        product = product or DEFAULT_PRODUCT
        if product not in PRODUCTS:
            raise E.param_error(f"params error: product must be one of {', '.join(PRODUCTS)}")
        if not MIN_WINDOW_S <= window <= MAX_WINDOW_S:
            raise E.param_error(f"params error: timeWindow must be in [{MIN_WINDOW_S}, {MAX_WINDOW_S}]")
        self.windows[product] = window

    def infos(self) -> list[dict[str, str]]:
        """``dcpInfos`` of query-dcp-info: empty for an account without DCP (as Bybit answers one)."""
        if not self.enabled:
            return []
        return [{"product": p, "dcpStatus": "ON", "timeWindow": str(self.windows[p])} for p in PRODUCTS]

    def check(self, now: float, alive: bool) -> bool:
        """Note whether a dcp.future connection is alive at ``now``; return True when DCP fires now."""
        if not self.enabled:
            self.armed = False
            return False
        if alive:
            self.armed = True
            self.last_alive = now
            return False
        if self.armed and now - self.last_alive >= self.windows["DERIVATIVES"]:
            self.armed = False  # once an episode; a new subscription arms it again
            self.triggered += 1
            return True
        return False

    def describe(self) -> dict[str, object]:
        return {"enabled": self.enabled, "windows": dict(self.windows), "armed": self.armed,
                "triggered": self.triggered}
