"""The X-Bapi-Limit* headers Bybit sends on every REST answer."""

from __future__ import annotations

import time

from .constants import RATE_LIMIT

ORDER_PATHS_LIMIT = RATE_LIMIT
OTHER_PATHS_LIMIT = 50


class RateWindow:
    """Per-path one-second windows, reported in the X-Bapi-Limit* headers (not enforced)."""

    def __init__(self) -> None:
        self._windows: dict[str, tuple[int, int]] = {}

    def headers(self, path: str, *, exhausted: bool = False, reset_ms: int | None = None) -> dict[str, str]:
        limit = ORDER_PATHS_LIMIT if path.startswith("/v5/order/") else OTHER_PATHS_LIMIT
        second = int(time.time())
        start, count = self._windows.get(path, (second, 0))
        if start != second:
            start, count = second, 0
        count += 1
        self._windows[path] = (start, count)
        remaining = 0 if exhausted else max(0, limit - count)
        reset = reset_ms if reset_ms is not None else (start + 1) * 1000
        return {"X-Bapi-Limit": str(limit), "X-Bapi-Limit-Status": str(remaining),
                "X-Bapi-Limit-Reset-Timestamp": str(reset)}
