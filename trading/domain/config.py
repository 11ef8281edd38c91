"""The trading config: a validated pydantic model and the hot-reloading engine.

``TradingConfig`` is strict on purpose: a string where a number belongs, an
unknown key (a typo), a NaN or an out-of-range value is refused with an error
that names the field path, instead of being coerced into something the operator
did not write. Every field has a default, so a ``config.json`` only needs the
values it changes; ``DEFAULT_CONFIG`` is the spec's built-in "fallback config".
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from failover.domain.clock import Clock
from failover.domain.files import describe_error, read_bounded
from trading.domain.alert_types import ALERT_TYPES

logger = logging.getLogger(__name__)


class _Section(BaseModel):
    # strict: "5" is not 5; forbid: a misspelt key is an error, not a silent default.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


def _greater_than(info: ValidationInfo, value: float, other: str) -> None:
    """Refuse ``value`` unless it exceeds the already-validated field ``other``."""
    bound = info.data.get(other)
    if bound is not None and value <= bound:
        raise ValueError(f"must be greater than {other} ({bound})")


class FeatureConfig(_Section):
    vol_half_life_ms: float = Field(default=30_000.0, gt=0, le=86_400_000)
    # vol_bps is the 1-sigma move over this horizon
    vol_horizon_ms: float = Field(default=60_000.0, gt=0, le=86_400_000)
    flow_half_life_ms: float = Field(default=5_000.0, gt=0, le=86_400_000)
    vwap_half_life_ms: float = Field(default=60_000.0, gt=0, le=86_400_000)
    momentum_fast_half_life_ms: float = Field(default=2_000.0, gt=0, le=86_400_000)
    momentum_slow_half_life_ms: float = Field(default=15_000.0, gt=0, le=86_400_000)
    warmup_events: int = Field(default=50, ge=1, le=1_000_000)

    @field_validator("momentum_slow_half_life_ms")
    @classmethod
    def _slow_after_fast(cls, value: float, info: ValidationInfo) -> float:
        _greater_than(info, value, "momentum_fast_half_life_ms")
        return value


class RegimeConfig(_Section):
    high_vol_enter_bps: float = Field(default=60.0, gt=0)
    high_vol_exit_bps: float = Field(default=45.0, gt=0)
    trend_enter: float = Field(default=1.0, gt=0)  # |slow momentum| / volatility that starts a trend
    trend_exit: float = Field(default=0.5, ge=0)  # ... and below which the trend ends
    confirm_updates: int = Field(default=3, ge=1, le=10_000)

    @field_validator("high_vol_exit_bps")
    @classmethod
    def _vol_exit_below_enter(cls, value: float, info: ValidationInfo) -> float:
        enter = info.data.get("high_vol_enter_bps")
        if enter is not None and value >= enter:
            raise ValueError(f"must be less than high_vol_enter_bps ({enter})")
        return value

    @field_validator("trend_exit")
    @classmethod
    def _trend_exit_below_enter(cls, value: float, info: ValidationInfo) -> float:
        enter = info.data.get("trend_enter")
        if enter is not None and value >= enter:
            raise ValueError(f"must be less than trend_enter ({enter})")
        return value


class ScoringWeights(_Section):
    momentum_fast: float = Field(default=0.3, ge=-10, le=10)
    momentum_slow: float = Field(default=0.2, ge=-10, le=10)
    order_flow: float = Field(default=0.3, ge=-10, le=10)
    vwap: float = Field(default=0.1, ge=-10, le=10)
    regime: float = Field(default=0.1, ge=-10, le=10)

    @model_validator(mode="after")
    def _not_all_zero(self) -> ScoringWeights:
        if self.abs_sum() == 0:
            raise ValueError("at least one weight must be non-zero")
        return self

    def abs_sum(self) -> float:
        """Return the sum of absolute weights (the score's normaliser)."""
        return (
            abs(self.momentum_fast) + abs(self.momentum_slow) + abs(self.order_flow) + abs(self.vwap) + abs(self.regime)
        )


class ScoringConfig(_Section):
    weights: ScoringWeights = ScoringWeights()
    momentum_scale_bps: float = Field(default=10.0, gt=0)  # momentum that counts as full conviction
    vwap_scale_bps: float = Field(default=20.0, gt=0)
    max_spread_bps: float = Field(default=10.0, gt=0)  # spread at which the spread penalty is full
    spread_penalty: float = Field(default=0.5, ge=0, le=1)
    high_vol_factor: float = Field(default=0.5, ge=0, le=1)  # scores are multiplied by this in HIGH_VOL
    watch_threshold: float = Field(default=0.35, gt=0, le=1)
    entry_threshold: float = Field(default=0.6, gt=0, le=1)

    @field_validator("entry_threshold")
    @classmethod
    def _entry_not_below_watch(cls, value: float, info: ValidationInfo) -> float:
        watch = info.data.get("watch_threshold")
        if watch is not None and value < watch:
            raise ValueError(f"must be greater than or equal to watch_threshold ({watch})")
        return value


class StateMachineConfig(_Section):
    watch_timeout_ms: int = Field(default=30_000, gt=0, le=86_400_000)
    arm_timeout_ms: int = Field(default=5_000, gt=0, le=86_400_000)
    order_request_timeout_ms: int = Field(default=10_000, gt=0, le=86_400_000)
    cooldown_ms: int = Field(default=60_000, ge=0, le=86_400_000)


class RiskConfig(_Section):
    trading_enabled: bool = True
    risk_per_trade_pct: float = Field(default=0.25, gt=0, le=5)  # of equity lost if the stop is hit
    max_open_positions: int = Field(default=3, ge=1, le=100)
    max_heat_pct: float = Field(default=300.0, gt=0, le=10_000)  # total notional / equity, in percent
    daily_loss_limit_pct: float = Field(default=2.0, gt=0, le=100)
    default_leverage: int = Field(default=5, ge=1, le=100)
    stop_vol_multiple: float = Field(default=1.5, gt=0, le=100)  # stop distance = multiple x vol_bps x price
    min_stop_bps: float = Field(default=5.0, ge=0, le=5_000)  # floor so a dead-calm market does not size huge
    take_profit_multiple: float = Field(default=2.0, gt=0, le=100)  # take profit distance = multiple x stop distance


class QualityConfig(_Section):
    slippage_window: int = Field(default=20, ge=1, le=10_000)  # fills kept per symbol
    # older fills age out, so a blocked symbol recovers
    slippage_window_s: float = Field(default=900.0, gt=0, le=604_800)
    max_slippage_bps: float = Field(default=20.0, gt=0)  # average adverse slippage at which the score reaches 0
    quality_threshold: float = Field(default=50.0, ge=0, le=100)
    recovery_threshold: float = Field(default=70.0, ge=0, le=100)

    @field_validator("recovery_threshold")
    @classmethod
    def _recovery_above_threshold(cls, value: float, info: ValidationInfo) -> float:
        _greater_than(info, value, "quality_threshold")
        return value


class LatencyConfig(_Section):
    window: int = Field(default=1024, ge=16, le=65_536)  # samples kept per channel
    warn_ms: float = Field(default=250.0, gt=0)
    error_ms: float = Field(default=1_000.0, gt=0)

    @field_validator("error_ms")
    @classmethod
    def _error_above_warn(cls, value: float, info: ValidationInfo) -> float:
        _greater_than(info, value, "warn_ms")
        return value


class DetectorConfig(_Section):
    # consecutive REST failures -> EXCHANGE_UNAVAILABLE
    rest_failures_unavailable: int = Field(default=3, ge=1, le=1_000)
    public_reconnects_max: int = Field(default=3, ge=1, le=1_000)  # reconnects within the window -> PUBLIC_WS_DEGRADED
    public_reconnects_window_s: float = Field(default=60.0, gt=0, le=86_400)
    market_data_stale_s: float = Field(default=10.0, gt=0, le=3_600)
    private_silence_s: float = Field(default=30.0, gt=0, le=3_600)
    latency_avg_ms: float = Field(default=500.0, gt=0)
    latency_sustain_s: float = Field(default=10.0, gt=0, le=3_600)
    packet_loss_window_s: float = Field(default=60.0, gt=0, le=86_400)
    module_crash_quiet_s: float = Field(default=5.0, gt=0, le=3_600)  # MODULE_CRASH holds until no crash for this long


class FailoverConfig(_Section):
    safe_mode_warn_after_s: float = Field(default=300.0, gt=0, le=86_400)
    recovery_warn_after_s: float = Field(default=300.0, gt=0, le=86_400)  # the spec's "e.g. > 5 min"
    recovery_error_after_s: float = Field(default=900.0, gt=0, le=86_400)
    process_state_interval_s: float = Field(default=5.0, ge=5, le=15)
    recent_order_window_ms: int = Field(default=30_000, gt=0, le=3_600_000)
    # unconfirmed failover state -> treat as safe mode
    state_confirm_timeout_s: float = Field(default=10.0, gt=0, le=3_600)
    detectors: DetectorConfig = DetectorConfig()

    @field_validator("recovery_error_after_s")
    @classmethod
    def _error_after_warn(cls, value: float, info: ValidationInfo) -> float:
        _greater_than(info, value, "recovery_warn_after_s")
        return value


AlertLevelName = Literal["INFO", "WARN", "CRIT"]


class SinkLevels(_Section):
    """The lowest level each outside sink is sent; the database keeps every alert whatever these say."""

    dashboard: AlertLevelName = "INFO"
    webhook: AlertLevelName = "INFO"
    telegram: AlertLevelName = "WARN"
    email: AlertLevelName = "CRIT"


class AlertsConfig(_Section):
    # The same (type, symbol) again within the window is counted, not sent; a higher level always goes out.
    dedupe_window_s: float = Field(default=60.0, ge=0, le=86_400)
    crit_dedupe_window_s: float = Field(default=10.0, ge=0, le=86_400)
    # Alerts of one type sent in any 60 s, whatever their symbol; the rest are counted, not sent (0: no limit).
    max_per_type_per_minute: int = Field(default=20, ge=0, le=10_000)
    min_level: SinkLevels = SinkLevels()
    # Stored (the record stays whole) but sent to no outside sink, the dashboard's live push included.
    muted_types: tuple[str, ...] = Field(default=(), max_length=len(ALERT_TYPES))

    @field_validator("muted_types", mode="before")
    @classmethod
    def _array_as_tuple(cls, value: object) -> object:
        # JSON has arrays, not tuples: take an array as the tuple the frozen config keeps.
        if isinstance(value, list):
            return tuple(value)
        if isinstance(value, tuple):
            return value
        raise ValueError("must be an array of alert type names")

    @field_validator("muted_types")
    @classmethod
    def _known_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - ALERT_TYPES)
        if unknown:
            raise ValueError(f"unknown alert type {', '.join(unknown)} (known: {', '.join(sorted(ALERT_TYPES))})")
        return value


class HealthConfig(_Section):
    stale_after_s: float = Field(default=30.0, gt=0, le=86_400)


DeadmanAction = Literal["cancel_entries", "flatten", "none"]


class DeadmanConfig(_Section):
    """The guardian's rule when no trader holds the account's lease (read by the Celery side at every sweep)."""

    after_s: float = Field(default=60.0, gt=0, le=86_400)  # no lease held for this long: the guardian acts
    # cancel_entries: cancel every resting order that is not reduce-only; flatten: that, then close every
    # position reduce-only; none: safe mode and the alert only.
    action: DeadmanAction = "cancel_entries"


class ExchangeConfig(_Section):
    # Bybit's Disconnection Cancel All window, armed where the account has it; None: not armed.
    dcp_window_s: int | None = Field(default=None, ge=3, le=300)


class TradingConfig(_Section):
    version: int = Field(default=1, ge=1)
    features: FeatureConfig = FeatureConfig()
    regime: RegimeConfig = RegimeConfig()
    scoring: ScoringConfig = ScoringConfig()
    state_machine: StateMachineConfig = StateMachineConfig()
    risk: RiskConfig = RiskConfig()
    quality: QualityConfig = QualityConfig()
    latency: LatencyConfig = LatencyConfig()
    failover: FailoverConfig = FailoverConfig()
    alerts: AlertsConfig = AlertsConfig()
    health: HealthConfig = HealthConfig()
    deadman: DeadmanConfig = DeadmanConfig()
    exchange: ExchangeConfig = ExchangeConfig()


DEFAULT_CONFIG = TradingConfig()


def default_config_json() -> str:
    """Return ``DEFAULT_CONFIG`` as the text of a complete ``config.json``."""
    return DEFAULT_CONFIG.model_dump_json(indent=2) + "\n"


def format_validation_errors(exc: ValidationError) -> list[str]:
    """Turn pydantic errors into ``section.field: message`` lines."""
    lines = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(part) for part in err["loc"]) or "(root)"
        lines.append(f"{where}: {err['msg']}")
    return lines


def parse_config(text: str) -> TradingConfig:
    """Parse and validate config text; raise ``ConfigError`` with readable errors, whatever is wrong with it."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError([f"(root): invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"]) from exc
    except Exception as exc:  # ValueError past the 4,300-digit int limit, RecursionError on deep nesting
        raise ConfigError([f"(root): invalid JSON: {describe_error(exc)}"]) from exc
    try:
        return TradingConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_errors(exc)) from exc
    except Exception as exc:  # a value the validators choke on is as invalid as one they refuse
        raise ConfigError([f"(root): {describe_error(exc)}"]) from exc


MAX_CONFIG_BYTES = 1024 * 1024  # a complete config is about 3 KB; anything near this bound is not a config


def read_config_bytes(path: str | os.PathLike[str]) -> bytes:
    """Return the bytes of a config file; ``FileNotFoundError`` if absent, ``ConfigError`` for any other failure.

    The read is bounded (``MAX_CONFIG_BYTES``, 1 MiB) and refuses what is not a
    regular file: a directory, a FIFO, a symlink loop are bad configs, not crashes.
    """
    try:
        return read_bounded(path, MAX_CONFIG_BYTES)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise ConfigError([f"(root): cannot read {Path(path).name}: {describe_error(exc)}"]) from exc


def parse_config_bytes(raw: bytes) -> TradingConfig:
    """Decode and validate the bytes of a config file; raise ``ConfigError`` for anything wrong."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"(root): not UTF-8 text: {exc.reason} at byte {exc.start}"]) from exc
    return parse_config(text)


def read_config_file(path: str | os.PathLike[str]) -> TradingConfig | None:
    """Return the validated config in ``path``, None if there is none; raise ``ConfigError`` for a bad one."""
    try:
        raw = read_config_bytes(path)
    except FileNotFoundError:
        return None
    return parse_config_bytes(raw)


class ConfigError(ValueError):
    """A config text that does not parse or validate; ``errors`` names each field."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class ConfigApplied:
    """A new config is in force (``source``: file, default or fallback)."""

    config: TradingConfig
    previous: TradingConfig
    source: str
    at: int  # epoch ms


@dataclass(frozen=True, slots=True)
class ConfigInvalid:
    """A config file was refused; the running config stays in force."""

    path: str
    errors: list[str] = field(default_factory=list)
    at: int = 0  # epoch ms


ConfigEvent = ConfigApplied | ConfigInvalid
ConfigListener = Callable[[ConfigEvent], None]

SOURCE_FILE = "file"
SOURCE_DEFAULT = "default"
SOURCE_FALLBACK = "fallback"


class ConfigEngine:
    """Load ``config.json``, hot-reload it when it changes, refuse invalid versions.

    ``config`` is always a complete, validated, immutable ``TradingConfig``;
    replacing the reference is atomic, so readers never see half a config. No
    file makes ``load`` or ``poll`` raise: whatever is wrong with it becomes a
    ``ConfigInvalid`` naming the problem, sent once per distinct bad content
    (the bytes' hash, or the error when the file cannot be read), not on every
    poll; ``load`` always reports, being an explicit request.
    """

    def __init__(self, path: str | os.PathLike[str], clock: Clock) -> None:
        self.path = Path(path)
        self._clock = clock
        self._config: TradingConfig = DEFAULT_CONFIG
        self._listeners: list[ConfigListener] = []
        self._fingerprint: tuple[object, ...] | None = None
        self._refused: str | None = None  # what identifies the bad content last reported
        self.source: str = SOURCE_DEFAULT
        self.on_fallback = False
        self.last_errors: list[str] = []
        self.message = "not loaded yet; using the built-in default"

    @property
    def config(self) -> TradingConfig:
        """Return the config in force."""
        return self._config

    @property
    def refusing(self) -> bool:
        """Whether the file as it is now was refused (``last_errors`` says why): the config in force is not it."""
        return self._refused is not None

    def add_listener(self, listener: ConfigListener) -> None:
        """Call ``listener`` with every ``ConfigApplied`` and ``ConfigInvalid`` event."""
        self._listeners.append(listener)

    def load(self) -> ConfigEvent | None:
        """Read the file now, whatever its fingerprint; return the event it caused."""
        self._refused = None
        return self._read(self._stat())

    def poll(self) -> ConfigEvent | None:
        """Reload if the file's mtime, size or inode changed; return the event it caused."""
        fingerprint = self._stat()
        if fingerprint == self._fingerprint:
            return None
        return self._read(fingerprint)

    def use_fallback(self, reason: str = "fallback requested") -> ConfigApplied:
        """Switch to ``DEFAULT_CONFIG`` and stay there until a valid file change arrives."""
        self.on_fallback = True
        self.message = f"on the built-in fallback config: {reason}"
        logger.warning("config: %s", self.message)
        return self._apply(DEFAULT_CONFIG, SOURCE_FALLBACK)

    def _stat(self) -> tuple[object, ...] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            # A symlink loop or a permission error: a fixed fingerprint, so it is read (and refused) once.
            return ("error", type(exc).__name__, str(exc))
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _read(self, fingerprint: tuple[object, ...] | None) -> ConfigEvent | None:
        self._fingerprint = fingerprint
        if fingerprint is None:
            return self._missing()
        try:
            raw = read_config_bytes(self.path)
        except FileNotFoundError:
            # Deleted between stat and read: the next poll sees it missing.
            self._fingerprint = None
            return self._missing()
        except ConfigError as exc:
            return self._refuse(exc.errors, key="\n".join(exc.errors))
        try:
            new = parse_config_bytes(raw)
        except ConfigError as exc:
            return self._refuse(exc.errors, key=hashlib.sha256(raw).hexdigest())
        self._refused = None
        self.on_fallback = False
        self.last_errors = []
        self.message = f"loaded {self.path.name}"
        return self._apply(new, SOURCE_FILE)

    def _missing(self) -> ConfigEvent | None:
        self._refused = None
        if self.source == SOURCE_FILE:
            # A file that vanished while running: keep what is in force, say so.
            self.message = f"{self.path.name} is missing; keeping the config in force"
            logger.warning("config: %s", self.message)
            return None
        self.message = f"{self.path.name} not found; using the built-in default"
        logger.info("config: %s", self.message)
        if self._config is DEFAULT_CONFIG:
            return None
        return self._apply(DEFAULT_CONFIG, SOURCE_DEFAULT)

    def _refuse(self, errors: list[str], *, key: str) -> ConfigInvalid | None:
        if key == self._refused:
            return None  # this bad content was reported already: once per content, not once per poll
        self._refused = key
        self.last_errors = list(errors)
        self.message = f"{self.path.name} refused, keeping the config in force: " + "; ".join(errors)
        logger.error("config: %s", self.message)
        event = ConfigInvalid(path=str(self.path), errors=list(errors), at=self._clock.now_ms())
        self._notify(event)
        return event

    def _apply(self, new: TradingConfig, source: str) -> ConfigApplied:
        previous = self._config
        self._config = new
        self.source = source
        event = ConfigApplied(config=new, previous=previous, source=source, at=self._clock.now_ms())
        self._notify(event)
        return event

    def _notify(self, event: ConfigEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                # One broken listener must not keep the others from hearing about it.
                logger.exception("config listener %r failed", listener)
