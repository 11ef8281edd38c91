"""Point pybit's unmodified HTTP and WebSocket clients at the simulator (or any V5 host).

The one place that knows how: pybit builds ``https://api.bybit.com`` in
``HTTP.__post_init__`` and reads ``session.endpoint`` at call time, and its
WebSocket formats a ``wss://{SUBDOMAIN}.{DOMAIN}...`` template in ``_connect``,
which reconnects also go through (pybit-brief section 1, option B).
"""

from __future__ import annotations

import re
from typing import Any

from pybit.unified_trading import HTTP, WebSocket

from .constants import DEFAULT_API_KEY, DEFAULT_API_SECRET

_TEMPLATE_HOST = re.compile(r"^wss://\{SUBDOMAIN\}\.\{DOMAIN\}\.(?:\{TLD\}|com)")


def sim_http(
    base_url: str, api_key: str | None = DEFAULT_API_KEY, api_secret: str | None = DEFAULT_API_SECRET, **kw: Any
) -> HTTP:
    """Return a pybit ``HTTP`` session whose every request goes to ``base_url`` (e.g. http://127.0.0.1:8765)."""
    kw.setdefault("testnet", False)
    session = HTTP(api_key=api_key, api_secret=api_secret, **kw)
    session.endpoint = base_url.rstrip("/")
    return session


class SimWebSocket(WebSocket):
    """pybit's ``WebSocket`` connecting to ``sim_base`` (e.g. ws://127.0.0.1:8765) instead of Bybit.

    ``testnet`` stays a required keyword, as in pybit.
    """

    def __init__(self, channel_type: str, *, sim_base: str, **kw: Any) -> None:
        self._sim_base = sim_base.rstrip("/")
        super().__init__(channel_type, **kw)

    def _connect(self, url: str) -> None:
        # First connect gets the template; reconnects get the already-resolved ws:// URL.
        return super()._connect(_TEMPLATE_HOST.sub(self._sim_base, url))


def sim_websocket(
    channel_type: str,
    sim_base: str,
    api_key: str | None = DEFAULT_API_KEY,
    api_secret: str | None = DEFAULT_API_SECRET,
    **kw: Any,
) -> SimWebSocket:
    """Return a connected ``SimWebSocket``; keys are only sent for the private channel."""
    kw.setdefault("testnet", False)
    if channel_type == "private":
        kw.setdefault("api_key", api_key)
        kw.setdefault("api_secret", api_secret)
    return SimWebSocket(channel_type, sim_base=sim_base, **kw)
