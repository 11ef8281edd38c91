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
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

# Bounds of what a fault may ask for: wide enough for any test, narrow enough that
# no value can wedge the server (a 1e308 s fault, a status Python cannot send).
MAX_DURATION_S = 86_400.0
MAX_COUNT = 1_000_000
MAX_DELAY_MS = 60_000
MAX_HOLD_S = 600.0
MAX_SLIPPAGE_BPS = 5_000  # 50 %: fills stay above one tick (matching clamps there)
MAX_TEXT = 65_536
MAX_ACTIVE = 256  # active faults at once

# Strict: a status of "503", True or 503.0 is a caller's mistake, not a number to guess at.
_PARAMS = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

PathGlob = Annotated[str, Field(min_length=1, max_length=200)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
DelayMs = Annotated[int, Field(ge=0, le=MAX_DELAY_MS)]
Stream = Literal["public", "private", "all"]
Symbol = Annotated[str, Field(pattern=r"^[A-Z0-9]{1,30}$")]


class HttpError(BaseModel):
    """REST answers an HTTP error status."""

    model_config = _PARAMS
    status: int = Field(503, ge=400, le=599)
    path: PathGlob = "*"
    fraction: Fraction = 1.0


class RateLimit(BaseModel):
    """REST answers retCode 10006 with Bybit's rate-limit headers."""

    model_config = _PARAMS
    path: PathGlob = "*"
    fraction: Fraction = 1.0
    reset_ms: int = Field(1000, ge=1, le=3_600_000)


class Latency(BaseModel):
    """Added delay on REST or a stream ("ws" is both streams)."""

    model_config = _PARAMS
    target: Literal["rest", "ws", "ws_public", "ws_private"] = "rest"
    path: PathGlob = "*"
    fixed_ms: DelayMs = 100
    jitter_ms: DelayMs = 0


class WsDrop(BaseModel):
    """Drop WebSocket connections ("close" or "abort").

    Existing connections drop at once; while the fault lasts new ones drop right after the upgrade.
    """

    model_config = _PARAMS
    stream: Stream = "all"
    mode: Literal["close", "abort"] = "close"


class WsStream(BaseModel):
    """A fault on every connection of a stream: refused upgrades (HTTP 503), or silence (no data, no pongs)."""

    model_config = _PARAMS
    stream: Stream = "all"


class WsMalformed(BaseModel):
    """Send one malformed (non-JSON) text frame to every connection of the stream."""

    model_config = _PARAMS
    stream: Stream = "all"
    text: str = Field("{this is not json", max_length=MAX_TEXT)


class MarketFreeze(BaseModel):
    """No public messages for one symbol (the exchange's market keeps moving)."""

    model_config = _PARAMS
    symbol: Symbol = "BTCUSDT"


class AmbiguousSubmit(BaseModel):
    """The order is created but its HTTP response is never sent: "drop" cuts the connection, "hang" holds it first."""

    model_config = _PARAMS
    path: PathGlob = "/v5/order/create"
    mode: Literal["drop", "hang"] = "drop"
    hold_s: float = Field(30.0, gt=0.0, le=MAX_HOLD_S)


class Slippage(BaseModel):
    """Taker fills of a symbol land ``bps`` basis points worse than the book."""

    model_config = _PARAMS
    symbol: Symbol = "BTCUSDT"
    bps: int = Field(500, ge=0, le=MAX_SLIPPAGE_BPS)


# kind -> its parameters, with defaults and bounds
FAULT_KINDS: dict[str, type[BaseModel]] = {
    "http_error": HttpError,
    "rate_limit": RateLimit,
    "latency": Latency,
    "ws_drop": WsDrop,
    "ws_refuse": WsStream,
    "ws_malformed": WsMalformed,
    "ws_silent": WsStream,
    "market_freeze": MarketFreeze,
    "ambiguous_submit": AmbiguousSubmit,
    "slippage": Slippage,
}


class Lifetime(BaseModel):
    """How long a fault lasts: ``duration_s`` seconds, ``count`` uses, or until cleared when both are None."""

    model_config = _PARAMS
    duration_s: float | None = Field(None, gt=0.0, le=MAX_DURATION_S)
    count: int | None = Field(None, ge=1, le=MAX_COUNT)


class FaultError(ValueError):
    """A fault request the registry refuses; ``field`` names the value at fault (``params.status``, ``duration_s``)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def _refusal(exc: ValidationError, prefix: str) -> FaultError:
    first = exc.errors()[0]
    name = ".".join(part for part in (prefix, *(str(p) for p in first["loc"])) if part)
    return FaultError(f"{name}: {first['msg']}", name)


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
        """Register a fault; raise FaultError naming the field on an unknown kind, parameter or value out of bounds."""
        model = FAULT_KINDS.get(kind)
        if model is None:
            raise FaultError(f"unknown fault kind {kind!r}; known: {', '.join(sorted(FAULT_KINDS))}", "kind")
        try:
            checked = model.model_validate(params or {}).model_dump()
        except ValidationError as exc:
            raise _refusal(exc, "params") from None
        try:
            life = Lifetime.model_validate({"duration_s": duration_s, "count": count})
        except ValidationError as exc:
            raise _refusal(exc, "") from None
        self.expire()
        if len(self.faults) >= MAX_ACTIVE:
            raise FaultError(f"{MAX_ACTIVE} faults are active already; clear some first", "faults")
        now = time.monotonic()
        fault = Fault(
            id=f"f{next(self._ids)}",
            kind=kind,
            params=checked,
            created=now,
            expires=None if life.duration_s is None else now + life.duration_s,
            remaining=life.count,
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
