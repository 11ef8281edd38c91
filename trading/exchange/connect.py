"""Build the pybit adapter for an exchange target: the simulator, or Bybit mainnet, testnet or demo.

The target travels between processes as a context without secrets (a Celery
worker running a recovery step builds the same adapter the trader uses); keys
for Bybit are read from the settings of whichever process builds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from pybit.unified_trading import HTTP, WebSocket

from trading.exchange.pybit_rest import PybitRest, RestObserver, pybit_http_kwargs
from trading.exchange.streams import MonitoredSocketMixin, SocketFactory
from trading.simexchange.constants import DEFAULT_API_KEY, DEFAULT_API_SECRET
from trading.simexchange.pybit_target import SimWebSocket, sim_http

SIM = "sim"
BYBIT = "bybit"
BYBIT_ENVS = ("mainnet", "testnet", "demo")


class MonitoredWebSocket(MonitoredSocketMixin, WebSocket):
    """pybit's WebSocket to Bybit, watched by the product."""


class MonitoredSimWebSocket(MonitoredSocketMixin, SimWebSocket):
    """pybit's WebSocket to the simulator, watched by the product."""


@dataclass(frozen=True)
class ExchangeTarget:
    kind: str = SIM
    base_url: str = "http://127.0.0.1:8765"  # the simulator's address (SIM only)
    bybit_env: str = "mainnet"

    def __post_init__(self) -> None:
        if self.kind not in (SIM, BYBIT):
            raise ValueError(f"exchange kind must be {SIM!r} or {BYBIT!r}, not {self.kind!r}")
        if self.kind == BYBIT and self.bybit_env not in BYBIT_ENVS:
            raise ValueError(f"bybit_env must be one of {', '.join(BYBIT_ENVS)}")

    def to_context(self) -> dict[str, str]:
        return {"kind": self.kind, "baseUrl": self.base_url, "bybitEnv": self.bybit_env}

    @classmethod
    def from_context(cls, context: dict[str, Any]) -> ExchangeTarget:
        return cls(
            kind=str(context.get("kind", SIM)),
            base_url=str(context.get("baseUrl", "")),
            bybit_env=str(context.get("bybitEnv", "mainnet")),
        )

    @property
    def ws_base(self) -> str:
        return self.base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)

    def keys(self) -> tuple[str, str]:
        if self.kind == SIM:
            return DEFAULT_API_KEY, DEFAULT_API_SECRET
        if not (settings.BYBIT_API_KEY and settings.BYBIT_API_SECRET):
            raise PermissionError("BYBIT_API_KEY and BYBIT_API_SECRET must be set in the environment")
        return settings.BYBIT_API_KEY, settings.BYBIT_API_SECRET

    def bybit_flags(self) -> dict[str, Any]:
        """The pybit constructor flags that pick the Bybit environment."""
        return {"testnet": self.bybit_env == "testnet", "demo": self.bybit_env == "demo"}


def rest_for(target: ExchangeTarget, *, timeout_s: float = 5.0, observer: RestObserver | None = None) -> PybitRest:
    """The exchange port over REST for ``target``."""
    key, secret = target.keys()
    if target.kind == SIM:
        http = sim_http(target.base_url, key, secret, **pybit_http_kwargs(timeout_s=timeout_s))
    else:
        http = HTTP(api_key=key, api_secret=secret, **target.bybit_flags(), **pybit_http_kwargs(timeout_s=timeout_s))
    return PybitRest(http, observer=observer)


def socket_factory(
    target: ExchangeTarget, channel_type: str, *, ping_interval: int = 20, ping_timeout: int = 10, retries: int = 3
) -> SocketFactory:
    """A factory of connected, monitored pybit WebSockets on ``channel_type`` ("linear" or "private")."""
    common: dict[str, Any] = {"ping_interval": ping_interval, "ping_timeout": ping_timeout, "retries": retries}
    if channel_type == "private":
        key, secret = target.keys()
        common.update(api_key=key, api_secret=secret)

    def build(**monitor: Any) -> Any:
        if target.kind == SIM:
            return MonitoredSimWebSocket(channel_type, sim_base=target.ws_base, testnet=False, **common, **monitor)
        return MonitoredWebSocket(channel_type, **target.bybit_flags(), **common, **monitor)

    return build
