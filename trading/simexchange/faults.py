"""Run-time faults of the simulator: what is injected, for how long, and where it applies.

The registry only decides; the server acts (answers 5xx, drops sockets, ...).
Every fault has an id, a kind, parameters, and ends after ``duration_s``, after
``count`` uses, or when cleared.
"""

from __future__ import annotations

import fnmatch
import itertools
import random
import time
from dataclasses import dataclass, field
from typing import Any

# kind -> (allowed parameters with defaults)
FAULT_KINDS: dict[str, dict[str, Any]] = {
    # REST answers an HTTP error status.
    "http_error": {"status": 503, "path": "*", "fraction": 1.0},
    # REST answers retCode 10006 with Bybit's rate-limit headers.
    "rate_limit": {"path": "*", "fraction": 1.0, "reset_ms": 1000},
    # Added delay: target "rest", "ws_public", "ws_private" or "ws".
    "latency": {"target": "rest", "path": "*", "fixed_ms": 100, "jitter_ms": 0},
    # Drop WebSocket connections: stream "public", "private" or "all"; mode "close" or "abort".
    # Existing connections drop at once; while the fault lasts new ones drop right after the upgrade.
    "ws_drop": {"stream": "all", "mode": "close"},
    # Refuse WebSocket upgrades (HTTP 503) while active.
    "ws_refuse": {"stream": "all"},
    # Send one malformed (non-JSON) text frame to every connection of the stream.
    "ws_malformed": {"stream": "all", "text": "{this is not json"},
    # Connections stay open but get no data and no pongs.
    "ws_silent": {"stream": "all"},
    # No public messages for one symbol (the exchange's market keeps moving).
    "market_freeze": {"symbol": "BTCUSDT"},
    # The order is created but its HTTP response is never sent: mode "drop" (cut the
    # connection) or "hang" (hold it for hold_s, then cut).
    "ambiguous_submit": {"path": "/v5/order/create", "mode": "drop", "hold_s": 30.0},
    # Taker fills of a symbol land ``bps`` basis points worse than the book.
    "slippage": {"symbol": "BTCUSDT", "bps": 500},
}

STREAMS = ("public", "private", "all")


@dataclass(slots=True)
class Fault:
    id: str
    kind: str
    params: dict[str, Any]
    created: float
    expires: float | None  # monotonic deadline, None = until cleared
    remaining: int | None  # uses left, None = unlimited
    hits: int = 0

    def describe(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "params": self.params,
            "remainingS": None if self.expires is None else round(max(0.0, self.expires - now), 3),
            "remainingCount": self.remaining,
            "hits": self.hits,
        }


@dataclass
class FaultRegistry:
    """Active faults, with the checks the server asks on every request and message."""

    seed: int = 0
    faults: dict[str, Fault] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._rng = random.Random(self.seed)

    def add(self, kind: str, params: dict[str, Any] | None = None, *, duration_s: float | None = None,
            count: int | None = None) -> Fault:
        """Register a fault; raise ValueError on an unknown kind or parameter."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(sorted(FAULT_KINDS))}")
        defaults = FAULT_KINDS[kind]
        params = dict(params or {})
        unknown = set(params) - set(defaults)
        if unknown:
            raise ValueError(f"unknown parameters for {kind}: {', '.join(sorted(unknown))}")
        merged = {**defaults, **params}
        for key, default in defaults.items():
            if isinstance(default, (int, float)) and not isinstance(default, bool):
                merged[key] = type(default)(merged[key])
            elif isinstance(default, str) and not isinstance(merged[key], str):
                raise ValueError(f"{kind}.{key} must be a string")
        if "stream" in merged and merged["stream"] not in STREAMS:
            raise ValueError(f"stream must be one of {STREAMS}")
        if kind == "ws_drop" and merged["mode"] not in ("close", "abort"):
            raise ValueError("ws_drop.mode must be close or abort")
        if kind == "ambiguous_submit" and merged["mode"] not in ("drop", "hang"):
            raise ValueError("ambiguous_submit.mode must be drop or hang")
        if kind == "latency" and merged["target"] not in ("rest", "ws", "ws_public", "ws_private"):
            raise ValueError("latency.target must be rest, ws, ws_public or ws_private")
        if duration_s is not None and duration_s < 0 or count is not None and count < 1:
            raise ValueError("duration_s must be >= 0 and count >= 1")
        now = time.monotonic()
        fault = Fault(
            id=f"f{next(self._ids)}",
            kind=kind,
            params=merged,
            created=now,
            expires=None if duration_s is None else now + duration_s,
            remaining=count,
        )
        self.faults[fault.id] = fault
        return fault

    def remove(self, fault_id: str) -> Fault | None:
        return self.faults.pop(fault_id, None)

    def clear(self, kind: str | None = None) -> list[Fault]:
        self.expire()
        gone = [f for f in self.faults.values() if kind is None or f.kind == kind]
        for f in gone:
            del self.faults[f.id]
        return gone

    def expire(self) -> list[Fault]:
        """Drop faults whose time is up; return them."""
        now = time.monotonic()
        gone = [f for f in self.faults.values() if f.expires is not None and f.expires <= now]
        for f in gone:
            del self.faults[f.id]
        return gone

    def active(self, kind: str) -> list[Fault]:
        now = time.monotonic()
        return [f for f in self.faults.values() if f.kind == kind and (f.expires is None or f.expires > now)]

    def use(self, fault: Fault) -> None:
        """Count one application of a fault; retire it when its count is spent."""
        fault.hits += 1
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                self.faults.pop(fault.id, None)

    # -- questions the server asks -----------------------------------------
    def rest_fault(self, kind: str, path: str) -> Fault | None:
        """Return the first active REST fault of ``kind`` that hits ``path`` this time."""
        for f in self.active(kind):
            if fnmatch.fnmatchcase(path, f.params.get("path", "*")) and self._rng.random() < f.params.get(
                "fraction", 1.0
            ):
                return f
        return None

    def delay_s(self, target: str, path: str = "*") -> float:
        """Return the added latency for a REST path or a stream ("ws_public"/"ws_private")."""
        total = 0.0
        for f in self.active("latency"):
            t = f.params["target"]
            hit = t == target or (t == "ws" and target.startswith("ws_"))
            if hit and (target != "rest" or fnmatch.fnmatchcase(path, f.params["path"])):
                total += (f.params["fixed_ms"] + self._rng.random() * f.params["jitter_ms"]) / 1000.0
        return total

    def stream_fault(self, kind: str, stream: str) -> Fault | None:
        for f in self.active(kind):
            if f.params["stream"] in ("all", stream):
                return f
        return None

    def frozen(self, symbol: str) -> bool:
        return any(f.params["symbol"] == symbol for f in self.active("market_freeze"))

    def slippage(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for f in self.active("slippage"):
            out[f.params["symbol"]] = out.get(f.params["symbol"], 0.0) + float(f.params["bps"])
        return out

    def describe(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [f.describe(now) for f in self.faults.values() if f.expires is None or f.expires > now]
