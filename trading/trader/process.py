"""The trader process (SIM, DRY_RUN, LIVE): one thread owns the pipeline and consumes one queue.

Market data, private stream events, completions of exchange calls, REST
observations, failover changes and operator commands all arrive as items on a
single queue, so there is exactly one writer of trading state. Startup and
crash recovery share one path (crash-only design): every start reads the
previous process state, reports PROCESS_RESTART / UNEXPECTED_SHUTDOWN /
DATA_CORRUPTION, and trades only when the FailoverManager says the startup plan
is done.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from failover.domain.clock import SystemClock
from failover.domain.enums import FailureSource, FailureType, Phase, RunMode, utc_now
from failover.domain.process_state import (
    ProcessStateCorrupt,
    ProcessStateStore,
    classify_previous_run,
    os_pid_alive,
    startup_failure_event,
)
from failover.domain.types import FailureEvent, ProcessState
from trading.domain.config import ConfigApplied, ConfigEngine, ConfigInvalid
from trading.domain.ids import OrderLinkIdFactory
from trading.engine.core import FaultHooks, TradingCore
from trading.engine.eventlog import EventLog
from trading.engine.failover_link import FailoverLink
from trading.engine.snapshots import order_from_local, position_from_local
from trading.engine.watchdog import Watchdog
from trading.exchange.connect import ExchangeTarget, rest_for, socket_factory
from trading.exchange.port import ExchangeError
from trading.exchange.streams import ManagedStream, private_subscriber, public_subscriber
from trading.trader.ops import TraderOps

logger = logging.getLogger("scalper.trader")


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


class GatewayDispatcher:
    """Run exchange calls on one gateway thread; hand outcomes back through the pipeline queue."""

    def __init__(self, post: Callable[[tuple], None]) -> None:
        self._post = post
        self._calls: queue.Queue[tuple[Callable[[], Any], Callable[[Any, BaseException | None], None]] | None] = (
            queue.Queue()
        )
        self._thread = threading.Thread(target=self._run, name="exchange-gateway", daemon=True)
        self._thread.start()

    def submit(self, call: Callable[[], Any], done: Callable[[Any, BaseException | None], None]) -> None:
        self._calls.put((call, done))

    def _run(self) -> None:
        while True:
            item = self._calls.get()
            if item is None:
                return
            call, done = item
            try:
                result, error = call(), None
            except Exception as exc:
                result, error = None, exc
            self._post(("done", done, result, error))

    def stop(self) -> None:
        self._calls.put(None)
        self._thread.join(timeout=5)


class Trader:
    """One trader: startup, the loop, shutdown."""

    def __init__(self, settings: TraderSettings, *, services: Any, control: Any) -> None:
        self.settings = settings
        self.services = services  # failover.services
        self.control = control  # trading.control
        self.state = TraderState.STARTING
        self.inbox: queue.SimpleQueue[tuple] = queue.SimpleQueue()
        self.clock = SystemClock()
        self._stop = threading.Event()
        data = settings.data_dir
        self.store = ProcessStateStore(data / "system" / "process_state.json", clock=utc_now)
        self.events = EventLog(data / "events", clock_ms=self.clock.now_ms, run_id=settings.run_id)
        self.config_engine = ConfigEngine(data / "config" / "config.json", self.clock)
        self.link = FailoverLink(
            run_id=settings.run_id,
            services=services,
            on_change=lambda s: self.post(("failover_changed", s)),
            confirm_timeout_ms=10_000,
        )
        self.hooks = FaultHooks()
        self.core: TradingCore | None = None
        self.streams: dict[str, ManagedStream] = {}
        self.ops: TraderOps | None = None

    # -- plumbing -----------------------------------------------------------

    def post(self, item: tuple) -> None:
        self.inbox.put(item)

    def request_stop(self, *_: object) -> None:
        self._stop.set()
        self.post(("wake",))

    def report(self, failure_type: FailureType, source: str, message: str, details: dict[str, Any]) -> None:
        event = FailureEvent(timestamp=utc_now(), type=failure_type, source=source, message=message, details=details)
        self.report_event(event)

    def report_event(self, event: FailureEvent) -> None:
        logger.warning("failure %s from %s: %s", event.type.value, event.source, event.message)
        self.events.write("_SYSTEM", "FAILURE", **event.to_dict())
        self.link.report(event)
        if self.ops is not None:
            self.ops.write_process_state(phase=Phase.RECOVERING)

    # -- startup ------------------------------------------------------------

    def _previous_run(self) -> list[FailureEvent]:
        """Read the previous process state; return the failures this start must report."""
        now = utc_now()
        try:
            previous = self.store.load()
        except ProcessStateCorrupt as corrupt:
            logger.error("process state was corrupt; moved to %s", corrupt.moved_to)
            return [
                corrupt.failure_event(now),
                FailureEvent(
                    timestamp=now,
                    type=FailureType.PROCESS_RESTART,
                    source=FailureSource.PROCESS_STATE_STORE,
                    message="Restart after a corrupt process state: full resync from the exchange",
                    details={"firstStart": False, "corruptStateMovedTo": str(corrupt.moved_to)},
                ),
            ]
        verdict = classify_previous_run(previous, os_pid_alive, current_pid=os.getpid())  # may refuse to start
        if previous is None or verdict is None:
            return [
                FailureEvent(
                    timestamp=now,
                    type=FailureType.PROCESS_RESTART,
                    source=FailureSource.PROCESS_STATE_STORE,
                    message="First start: converge with the exchange before trading",
                    details={"firstStart": True},
                )
            ]
        shutil.copyfile(self.store.path, self.store.path.with_name("process_state.previous.json"))
        return [startup_failure_event(previous, verdict, at=now)]

    def _start(self) -> None:
        s = self.settings
        failures = self._previous_run()
        self.store.save(
            ProcessState(
                last_update=utc_now(),
                pid=os.getpid(),
                run_mode=RunMode(s.mode),
                phase=Phase.STARTING,
                active_symbols=tuple(s.symbols),
            )
        )
        config_event = self.config_engine.load()
        self.link.apply_config(self.config_engine.config.failover)
        self.services.environment_register(
            run_id=s.run_id,
            context={
                "mode": s.mode,
                "exchange": s.target.to_context(),
                "dataDir": str(s.data_dir),
                "symbols": s.symbols,
                "pid": os.getpid(),
            },
        )
        self.link.start()
        self.link.refresh()
        for failure in failures:
            self.report_event(failure)
        if isinstance(config_event, ConfigInvalid):
            self._config_invalid(config_event)
        self.config_engine.add_listener(lambda event: self.post(("config", event)))

        # REST outcomes feed the detectors once the loop runs; failures while waiting for the
        # exchange at start are reported (and cleared) by _wait_for_exchange itself.
        rest = rest_for(s.target, observer=self._observe_rest)
        instruments = self._wait_for_exchange(lambda: rest.instruments(s.symbols))
        if s.mode == "DRY_RUN":
            from trading.exchange.dryrun import DryRunExchange

            rest = DryRunExchange(rest)
        dispatcher = GatewayDispatcher(self.post)
        from trading.persistence import DatabasePersistence

        self.watchdog = Watchdog(
            config=self.config_engine.config,
            symbols=s.symbols,
            clock=utc_now,
            ping_interval_s=s.ping_interval_s,
            pong_timeout_s=s.ping_timeout_s,
        )
        self.core = TradingCore(
            config=self.config_engine.config,
            clock=self.clock,
            instruments=instruments,
            exchange=rest,
            persistence=DatabasePersistence(s.run_id),
            events=self.events,
            safe_mode=self.link.is_safe_mode,
            on_crash=self._module_crash,
            ids=OrderLinkIdFactory(self.clock),
            dispatcher=dispatcher,
            fault_hooks=self.hooks,
        )
        self.core.execution.on_mismatch = self._mismatch
        self.ops = TraderOps(self, rest=rest, dispatcher=dispatcher)
        self.ops.reload_state()
        self._wait_for_exchange(lambda: self.core.execution.set_equity(rest.wallet().equity))
        sink = self._stream_sink
        self.streams = {
            "public": ManagedStream(
                "public",
                factory=socket_factory(
                    s.target,
                    "linear",
                    ping_interval=s.ping_interval_s,
                    ping_timeout=s.ping_timeout_s,
                    retries=s.stream_retries,
                ),
                subscribe=public_subscriber(s.symbols),
                sink=sink,
            ),
            "private": ManagedStream(
                "private",
                factory=socket_factory(
                    s.target,
                    "private",
                    ping_interval=s.ping_interval_s,
                    ping_timeout=s.ping_timeout_s,
                    retries=s.stream_retries,
                ),
                subscribe=private_subscriber,
                sink=sink,
            ),
        }
        for stream in self.streams.values():
            stream.start()
        self.bus = self._start_bus()
        self.state = TraderState.RUNNING
        self.ops.write_process_state(phase=Phase.RECOVERING if self.link.is_safe_mode() else Phase.RUNNING)
        self.events.write("_SYSTEM", "TRADER_STARTED", pid=os.getpid(), mode=s.mode, symbols=s.symbols)
        logger.info("trader running: %s %s (pid %d)", s.mode, ",".join(s.symbols), os.getpid())

    def _observe_rest(self, operation: str, ok: bool, elapsed_ms: float, kind: str) -> None:
        if self.state is TraderState.RUNNING:
            self.post(("rest", ok, elapsed_ms, kind))

    def _wait_for_exchange(self, call: Callable[[], Any]) -> Any:
        """Retry ``call`` with backoff until the exchange answers (reported once as unavailable, then cleared)."""
        delay, reported = 0.5, False
        while True:
            try:
                result = call()
                if reported:
                    self.events.write("_SYSTEM", "FAILURE_CLEARED", type=FailureType.EXCHANGE_UNAVAILABLE.value)
                    self.link.cleared(FailureType.EXCHANGE_UNAVAILABLE.value)
                return result
            except ExchangeError as exc:
                if not reported:
                    self.report(
                        FailureType.EXCHANGE_UNAVAILABLE,
                        FailureSource.EXECUTION_ENGINE,
                        f"Exchange not reachable at start: {exc}",
                        {"error": str(exc)},
                    )
                    reported = True
                if self._stop.wait(delay):
                    raise SystemExit(1) from exc
                delay = min(delay * 2, 10.0)

    def _start_bus(self) -> Any:
        from scalper_site.bus import BusListener

        def on_message(message: dict[str, Any]) -> None:
            if message.get("kind") == "trader.command":
                self.post(("command", message.get("payload") or {}))
            else:
                self.link.on_bus_message(message)

        return BusListener(on_message, run_id=self.settings.run_id).start()

    def _stream_sink(self, name: str, message: dict[str, Any]) -> None:
        if "topic" not in message:
            return  # auth and subscription answers
        self.post((name, message, self.clock.now_ms()))

    # -- reports from the pipeline -------------------------------------------

    def _module_crash(self, module: str, exc: BaseException, details: dict[str, Any]) -> None:
        event = self.watchdog.on_crash(module, f"{module} crashed: {details['error']}", details)
        if event is not None:
            self.report_event(event)

    def _mismatch(self, kind: str, details: dict[str, Any]) -> None:
        """The private stream showed an order or position this trader never made: local state is not the truth."""
        self.report(
            FailureType.NON_SYNC_STATE,
            FailureSource.RECONCILER,
            f"{kind.replace('_', ' ').lower()} on {details.get('symbol', '?')}: appeared behind the trader's back",
            {"kind": kind, **details, "symbols": [details["symbol"]] if "symbol" in details else []},
        )

    def _config_invalid(self, event: ConfigInvalid) -> None:
        self.report(
            FailureType.CONFIG_INVALID,
            FailureSource.CONFIG_ENGINE,
            f"Invalid config refused: {'; '.join(event.errors)[:300]}",
            {"path": str(event.path), "errors": list(event.errors)},
        )

    # -- the loop -----------------------------------------------------------

    def run(self) -> int:
        """Start, trade until stopped, stop; return the process exit code."""
        started = time.monotonic()
        try:
            self._start()
        except SystemExit:
            self._shutdown()
            return 1
        assert self.core is not None and self.ops is not None
        timers = self.ops.timers()
        handlers = self.ops.handlers()
        while not self._stop.is_set():
            try:
                item = self.inbox.get(timeout=0.05)
            except queue.Empty:
                item = None
            if item is not None:
                handlers[item[0]](item)
                for _ in range(500):  # drain a burst before looking at timers
                    try:
                        item = self.inbox.get_nowait()
                    except queue.Empty:
                        break
                    handlers[item[0]](item)
            now = time.monotonic()
            for timer in timers:
                timer.maybe_run(now)
            if self.settings.max_runtime_s is not None and now - started > self.settings.max_runtime_s:
                self._stop.set()
        self._shutdown()
        return 0

    def _shutdown(self) -> None:
        self.state = TraderState.STOPPING
        logger.info("trader stopping")
        for stream in self.streams.values():
            stream.close()
        if getattr(self, "bus", None) is not None:
            self.bus.stop()
        self.link.stop()
        if self.ops is not None:
            self.ops.write_process_state(phase=Phase.STOPPING)
        elif self.store.current is not None:
            self.store.update(phase=Phase.STOPPING)
        self.events.write("_SYSTEM", "TRADER_STOPPED", pid=os.getpid())
        self.events.sync()
        self.events.close()
        self.state = TraderState.STOPPED

    def snapshots(self) -> tuple[tuple, tuple]:
        assert self.core is not None
        positions = tuple(position_from_local(p) for p in self.core.state.positions.values())
        orders = tuple(order_from_local(o) for o in self.core.state.open_orders())
        return positions, orders

    def on_config_event(self, event: Any) -> None:
        assert self.core is not None
        if isinstance(event, ConfigInvalid):
            self._config_invalid(event)
        elif isinstance(event, ConfigApplied):
            self.core.apply_config(event.config)
            self.watchdog.apply_config(event.config)
            self.link.apply_config(event.config.failover)
            if event.source == "file":
                self.link.cleared(FailureType.CONFIG_INVALID.value)
