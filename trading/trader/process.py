"""The trader process (SIM, DRY_RUN, LIVE): one thread owns the pipeline and consumes one queue.

Market data, private stream events, completions of exchange calls, REST
observations, failover changes and operator commands all arrive as items on a
single queue, so there is exactly one writer of trading state. Startup and
crash recovery share one path (crash-only design): every start reads the
previous process state, reports PROCESS_RESTART / UNEXPECTED_SHUTDOWN /
DATA_CORRUPTION, and trades only when the FailoverManager says the startup plan
is done.

This module only builds the parts, runs the loop and shuts down; what each step
does lives in the parts (see README.md).
"""

from __future__ import annotations

import logging
import os
import queue
from functools import partial
from typing import TYPE_CHECKING

from failover.domain.enums import Phase
from trading.domain.config import ConfigInvalid
from trading.domain.ids import OrderLinkIdFactory
from trading.engine.core import TradingCore
from trading.engine.watchdog import Watchdog
from trading.exchange.lease import AccountLease
from trading.trader import role, startup
from trading.trader.blackbox import Blackbox
from trading.trader.commands import Commands
from trading.trader.context import Engine, TraderSettings, TraderState, build_context
from trading.trader.folder_lock import DataFolderLock, DataFolderRefused
from trading.trader.gateway import GatewayDispatcher, open_exchange, wait_for_exchange
from trading.trader.inbox import Handler, Inbox, report_mismatch, report_module_crash
from trading.trader.ports import FailoverServices, TraderAlerts, TraderControl

if TYPE_CHECKING:
    from scalper_site.bus import BusListener

__all__ = ["Trader", "TraderSettings", "TraderState"]

logger = logging.getLogger("scalper.trader")

EXIT_FOLDER_BUSY = 3  # another trader holds the data folder, or its disk refuses the lock file: nothing started


class Trader:
    """One trader: startup, the loop, shutdown."""

    def __init__(
        self,
        settings: TraderSettings,
        *,
        services: FailoverServices,
        control: TraderControl,
        alerts: TraderAlerts | None = None,
        lease: AccountLease | None = None,
    ) -> None:
        self.settings = settings
        self.queue: queue.SimpleQueue[tuple] = queue.SimpleQueue()
        self.ctx = build_context(
            settings, services=services, control=control, post=self.queue.put, alerts=alerts, lease=lease
        )
        self.blackbox: Blackbox | None = None  # exists once the exchange answered at start
        self.bus: BusListener | None = None
        self.keeper: role.LeaseKeeper | None = None  # renews the lease, or tries to take it (None: no lease)

    def request_stop(self, *_: object) -> None:
        self.ctx.stop.set()
        self.ctx.post(("wake",))

    # -- the loop -----------------------------------------------------------

    def run(self) -> int:
        """Hold the data folder, start, trade until stopped, stop; return the process exit code."""
        folder = DataFolderLock(self.settings.data_dir, run_id=self.settings.run_id)
        try:
            folder.acquire(self.settings.folder_wait_s)
        except DataFolderRefused as exc:  # nothing of the folder was read or written
            logger.error("trader not started: %s", exc)
            return EXIT_FOLDER_BUSY
        if folder.moved_aside is not None:
            logger.warning("the data folder's lock file (or its system folder) was not what it should be: "
                           "moved aside to %s", folder.moved_aside)
        try:
            return self._run()
        finally:
            folder.release()

    def _run(self) -> int:
        clock = self.ctx.clock
        started = clock.monotonic_ms() / 1000
        try:
            inbox = self._start()
        except SystemExit:
            self._shutdown()
            return 1
        timers, handlers = inbox.timers(), inbox.handlers()
        max_runtime_s = self.settings.max_runtime_s
        while not self.ctx.stop.is_set():
            self._drain(handlers)
            now = clock.monotonic_ms() / 1000
            for timer in timers:
                timer.maybe_run(now)
            if max_runtime_s is not None and now - started > max_runtime_s:
                self.ctx.stop.set()
        self._shutdown()
        return 0

    def _drain(self, handlers: dict[str, Handler]) -> None:
        """Handle the next item (waiting a little for one), then a burst of what is queued behind it."""
        try:
            item = self.queue.get(timeout=0.05)
        except queue.Empty:
            return
        handlers[item[0]](item)
        for _ in range(500):  # drain a burst before looking at timers
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            handlers[item[0]](item)

    # -- startup ------------------------------------------------------------

    def _start(self) -> Inbox:
        ctx, s = self.ctx, self.settings
        failures = startup.previous_run(ctx.store, now=ctx.clock.now())
        startup.record_start(ctx)
        attempt = role.first_attempt(ctx)  # the lease decides: LEADER trades, STANDBY waits warm
        if ctx.lease is not None:  # renewing from now: a start that waits long for the exchange keeps its lease
            self.keeper = role.LeaseKeeper(ctx.lease, ctx.post).start()
        dcp = startup.dcp_arming(ctx)  # armed by the leader's private stream builds (exchange.dcp_window_s)
        switch = role.RoleSwitch(ctx, start_failures=failures, dcp=dcp)
        config_event = ctx.config_engine.load()
        ctx.link.apply_config(ctx.config_engine.config.failover)
        ctx.apply_alerts_config(ctx.config_engine.config.alerts)
        ctx.link.start()
        ctx.link.refresh()
        if not ctx.standby:
            switch.lead(attempt)  # registers the environment, reports the start verdict and a refused config
        elif isinstance(config_event, ConfigInvalid):
            ctx.report_config_invalid(config_event.path, config_event.errors)  # recorded unreported until it leads
        ctx.config_engine.add_listener(lambda event: ctx.post(("config", event)))

        engine = self._build_engine()
        blackbox = self.blackbox = Blackbox(ctx, engine, leverage=engine.leverage, dcp=dcp)
        ctx.after_report = partial(blackbox.write_process_state, phase=Phase.RECOVERING)
        commands = Commands(ctx, engine, blackbox)
        switch.attach(engine, blackbox, commands)
        inbox = Inbox(ctx, engine, blackbox, commands, roles=switch, dcp=dcp)
        commands.reload_state()
        wait_for_exchange(ctx, lambda: engine.core.ledger.set_equity(engine.rest.wallet().equity))
        if not ctx.standby:
            startup.apply_leverage(engine)  # before the streams: no entry goes out on an unconfirmed leverage
        ctx.streams.update(startup.build_streams(s, startup.stream_sink(ctx), dcp=dcp))
        if dcp is not None and ctx.standby:
            dcp.stand_by()  # the leader arms it; this one says so
        for name, stream in ctx.streams.items():
            if name == "public" or not ctx.standby:  # a standby's private events are the leader's to store
                stream.start()
        self.bus = startup.start_bus(ctx)
        ctx.state = TraderState.RUNNING
        blackbox.write_process_state(phase=Phase.RECOVERING if ctx.link.is_safe_mode() else Phase.RUNNING)
        ctx.events.write("_SYSTEM", "TRADER_STARTED", pid=os.getpid(), mode=s.mode, symbols=s.symbols, role=ctx.role)
        logger.info("trader running: %s %s (pid %d, %s)", s.mode, ",".join(s.symbols), os.getpid(), ctx.role)
        return inbox

    def _build_engine(self) -> Engine:
        """Wait for the exchange, then build the gateway, the watchdog and the trading core."""
        ctx, s = self.ctx, self.settings
        rest, instruments = open_exchange(ctx)
        dispatcher = GatewayDispatcher(ctx.post)
        from trading.persistence import DatabasePersistence  # the Django edge: loaded by the process only

        config = ctx.config_engine.config
        watchdog = Watchdog(
            config=config,
            symbols=s.symbols,
            clock=ctx.clock,
            ping_interval_s=s.ping_interval_s,
            pong_timeout_s=s.ping_timeout_s,
        )
        core = TradingCore(
            config=config,
            clock=ctx.clock,
            instruments=instruments,
            exchange=rest,
            persistence=DatabasePersistence(s.run_id),
            events=ctx.events,
            safe_mode=lambda: ctx.standby or ctx.link.is_safe_mode(),  # a standby opens nothing
            halted=ctx.link.is_halted,
            on_crash=partial(report_module_crash, ctx, watchdog),
            ids=OrderLinkIdFactory(ctx.clock),
            dispatcher=dispatcher,
            fault_hooks=ctx.hooks,
            alerts=ctx.alert,
        )
        core.ledger.on_mismatch = partial(report_mismatch, ctx)
        leverage = startup.leverage_keeper(ctx, core, rest, dispatcher, instruments)
        return Engine(core=core, watchdog=watchdog, rest=rest, dispatcher=dispatcher, leverage=leverage)

    # -- shutdown -----------------------------------------------------------

    def _shutdown(self) -> None:
        ctx = self.ctx
        ctx.state = TraderState.STOPPING
        logger.info("trader stopping")
        if self.keeper is not None:
            self.keeper.stop()
        for stream in ctx.streams.values():
            stream.close()
        if self.bus is not None:
            self.bus.stop()
        ctx.link.stop()
        if self.blackbox is not None:
            self.blackbox.write_process_state(phase=Phase.STOPPING)
        elif ctx.store.current is not None:
            try:
                ctx.store.update(phase=Phase.STOPPING)
            except OSError as exc:  # a full disk: the next start reads the state as it last was written
                logger.error("process state not written at stop: %s", exc)
        if ctx.lease is not None and ctx.lease.release():  # last: a standby may take over at once
            logger.info("account lease given back")
        ctx.events.write("_SYSTEM", "TRADER_STOPPED", pid=os.getpid())
        ctx.events.sync()
        ctx.events.close()
        ctx.state = TraderState.STOPPED
