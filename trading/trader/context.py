"""What every part of the trader shares: its settings, its collaborators, and the engine once built.

Two objects, by lifetime. ``TraderContext`` exists from construction (before the
exchange has answered), so startup can report failures through it.
``Engine`` exists once the exchange answered: the trading core, its watchdog, and
the exchange behind the gateway thread. Neither holds the process: the parts get
them and nothing else, so each can be built and tested alone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any

from failover.domain.clock import Clock, SystemClock
from failover.domain.enums import FailureSource, FailureType
from failover.domain.process_state import ProcessStateStore
from failover.domain.types import FailureEvent
from trading.domain.alerts import AlertLevel, AlertMessage
from trading.domain.config import AlertsConfig, ConfigEngine
from trading.engine import crashpoints
from trading.engine.core import FaultHooks, TradingCore
from trading.engine.eventlog import EventLog
from trading.engine.execution import Dispatcher
from trading.engine.failover_link import FailoverLink
from trading.engine.leverage import LeverageKeeper
from trading.engine.watchdog import Watchdog
from trading.exchange.connect import ExchangeTarget
from trading.exchange.lease import DEFAULT_TTL_S, LEADER, STANDBY, AccountLease
from trading.exchange.port import ExchangePort
from trading.exchange.streams import ManagedStream
from trading.trader.ports import FailoverServices, TraderAlerts, TraderControl

logger = logging.getLogger("scalper.trader")

Post = Callable[[tuple], None]
"""Put one item on the pipeline queue (any thread may call it)."""


class TraderState(StrEnum):
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"


@dataclass(frozen=True)
class TraderSettings:
    mode: str
    symbols: list[str]
    run_id: str
    data_dir: Path
    target: ExchangeTarget
    ping_interval_s: int = 20
    ping_timeout_s: int = 10
    stream_retries: int = 3
    allow_fault_hooks: bool = False
    max_runtime_s: float | None = None
    lease_ttl_s: float = DEFAULT_TTL_S  # the account lease's TTL (renewed at a third of it)
    # How long a start waits for the data folder's lock: a trader still stopping gracefully may hold it.
    folder_wait_s: float = 20.0


@dataclass
class TraderContext:
    """The collaborators of one trader process, shared by its parts."""

    settings: TraderSettings
    services: FailoverServices
    control: TraderControl
    post: Post
    clock: Clock
    store: ProcessStateStore
    events: EventLog
    config_engine: ConfigEngine
    link: FailoverLink
    hooks: FaultHooks = field(default_factory=FaultHooks)
    stop: threading.Event = field(default_factory=threading.Event)
    state: TraderState = TraderState.STARTING
    streams: dict[str, ManagedStream] = field(default_factory=dict)  # filled at start, once the core exists
    # Once the black box exists, a reported failure also marks the process RECOVERING in it.
    after_report: Callable[[], None] | None = None
    alerts: TraderAlerts | None = None  # None: alerts are only logged (a trader built without the alerts edge)
    # The account lease (None: this trader is alone by construction, as in-process tests build it: always LEADER).
    lease: AccountLease | None = None
    role: str = LEADER  # LEADER or STANDBY; changed on the pipeline thread only (``trading.trader.role``)

    @property
    def standby(self) -> bool:
        return self.role == STANDBY

    def report(self, failure_type: FailureType, source: str, message: str, details: dict[str, Any]) -> None:
        event = FailureEvent(
            timestamp=self.clock.now(), type=failure_type, source=source, message=message, details=details
        )
        self.report_event(event)

    def report_event(self, event: FailureEvent) -> None:
        """Log, record and report a failure; the link turns safe mode on at once.

        A STANDBY reports nothing: the environment's failover state is the leader's; the standby's own
        start verdict is reported when it takes the lease.
        """
        logger.warning("failure %s from %s: %s", event.type.value, event.source, event.message)
        if self.standby:
            self.events.write("_SYSTEM", "FAILURE_NOT_REPORTED", role=self.role, **event.to_dict())
            return
        self.events.write("_SYSTEM", "FAILURE", **event.to_dict())
        self.link.report(event)
        if self.after_report is not None:
            self.after_report()

    def report_config_invalid(self, path: str, errors: list[str]) -> None:
        """Report CONFIG_INVALID; the FailoverManager raises its CRIT alert with the errors (the trader adds none)."""
        self.report(
            FailureType.CONFIG_INVALID,
            FailureSource.CONFIG_ENGINE,
            f"Invalid config refused: {'; '.join(errors)[:300]}",
            {"path": path, "errors": list(errors)},
        )

    def report_config_standing(self) -> None:
        """A new leader says where its own config stands, as no one else will.

        A refused file is reported CONFIG_INVALID (a refusal met as STANDBY was not). A config in force (the
        file's, or the default where there is no file) clears a CONFIG_INVALID an earlier leader or run left
        active: otherwise safe mode would wait for a hot reload that nothing is going to make.
        """
        engine = self.config_engine
        if engine.refusing:
            self.report_config_invalid(str(engine.path), engine.last_errors)
            return
        self.events.write("_SYSTEM", "CONFIG_STANDING", source=engine.source, message=engine.message)
        self.link.cleared(FailureType.CONFIG_INVALID.value)

    def report_cleared(self, failure_type: str) -> None:
        """Record and report that a failure this process detected is over (a STANDBY reports nothing)."""
        if self.standby:
            return
        self.events.write("_SYSTEM", "FAILURE_CLEARED", type=failure_type)
        self.link.cleared(failure_type)

    def alert(self, alert: AlertMessage) -> None:
        """Log ``alert`` and raise it for this environment; never raises, never waits on a notifier."""
        alert = replace(alert, run_id=self.settings.run_id)
        where = f" {alert.symbol}" if alert.symbol else ""
        level = logging.INFO if alert.level == AlertLevel.INFO else logging.WARNING
        logger.log(level, "alert %s %s%s: %s", alert.level, alert.type, where, alert.message)
        if self.alerts is None:
            return
        try:
            self.alerts.alert_raise(alert)
        except Exception:
            logger.exception("alert %s not raised", alert.type)

    def apply_alerts_config(self, config: AlertsConfig) -> None:
        """Put the config's ``alerts`` section in force for this environment's alerts (start and hot reload)."""
        if self.alerts is None:
            return
        try:
            self.alerts.alerts_configure(run_id=self.settings.run_id, config=config)
        except Exception:
            logger.exception("alerts config not applied")


def build_context(
    settings: TraderSettings,
    *,
    services: FailoverServices,
    control: TraderControl,
    post: Post,
    alerts: TraderAlerts | None = None,
    lease: AccountLease | None = None,
) -> TraderContext:
    """Build the collaborators of a trader over ``settings.data_dir``; nothing starts yet."""
    clock = SystemClock()
    data = settings.data_dir
    return TraderContext(
        settings=settings,
        services=services,
        control=control,
        post=post,
        clock=clock,
        store=ProcessStateStore(
            data / "system" / "process_state.json",
            clock=clock,
            midway=partial(crashpoints.reached, crashpoints.MID_STATE_WRITE),
        ),
        events=EventLog(data / "events", clock_ms=clock.now_ms, run_id=settings.run_id),
        config_engine=ConfigEngine(data / "config" / "config.json", clock),
        link=FailoverLink(
            run_id=settings.run_id,
            services=services,
            on_change=lambda state: post(("failover_changed", state)),
            confirm_timeout_ms=10_000,
            clock=clock,
        ),
        alerts=alerts,
        lease=lease,
        role=STANDBY if lease is not None else LEADER,  # with a lease: nothing is sent until it is taken
    )


@dataclass(frozen=True)
class Engine:
    """What start builds once the exchange answered: the core, its watchdog, the exchange and the gateway."""

    core: TradingCore
    watchdog: Watchdog
    rest: ExchangePort
    dispatcher: Dispatcher
    leverage: LeverageKeeper | None = None  # each symbol's leverage on the exchange (None: not managed)
