"""What the pipeline thread does with each queue item, and what it runs on a schedule.

Market data, private stream events, completions of exchange calls, REST
observations, failover changes, config events and operator commands arrive as
items on one queue (``(kind, ...)`` tuples); ``Inbox.handlers`` says what each
kind means. Between items the loop runs the timers: the core's tick, the health
checks that feed the watchdog, the REST probe, the heartbeat, the process state,
the config poll, the leverage calls still due (retries), the background
reconciliation and a DCP arming that failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from failover.domain.enums import FailureSource, FailureType
from failover.domain.reconcile import diff_orders, diff_positions
from trading.domain import reasons
from trading.domain.config import ConfigApplied, ConfigEvent, ConfigInvalid
from trading.engine.alerting import config_reloaded_alert
from trading.engine.execution import sync_from_exchange
from trading.engine.localstate import INTENT, SUBMITTED
from trading.engine.snapshots import order_from_exchange, order_from_local, position_from_exchange, position_from_local
from trading.engine.watchdog import Watchdog
from trading.exchange.port import ExchangeError
from trading.trader.blackbox import Blackbox
from trading.trader.commands import Commands
from trading.trader.context import Engine, TraderContext
from trading.trader.dcp import REBUILD as DCP_REBUILD
from trading.trader.dcp import SET as DCP_SET
from trading.trader.dcp import DcpArming
from trading.trader.ports import FailoverView
from trading.trader.role import RoleSwitch

logger = logging.getLogger("scalper.trader")

Handler = Callable[[tuple], None]

DCP_RETRY_EVERY_S = 60.0  # an arming the exchange failed is tried again this often (a rebuild of the private stream)


@dataclass
class Timer:
    every_s: float | Callable[[], float]  # a callable is read at each run: an interval the config may change
    action: Callable[[], object]
    name: str
    next_at: float = 0.0

    def maybe_run(self, now: float) -> None:
        if now < self.next_at:
            return
        self.next_at = now + (self.every_s() if callable(self.every_s) else self.every_s)
        try:
            self.action()
        except Exception:
            logger.exception("timer %s failed", self.name)


class Inbox:
    """Handle queue items and run the timers, on the pipeline thread only."""

    def __init__(
        self, ctx: TraderContext, engine: Engine, blackbox: Blackbox, commands: Commands,
        *, roles: RoleSwitch | None = None, dcp: DcpArming | None = None,
    ) -> None:
        self._ctx = ctx
        self._roles = roles
        self._engine = engine
        self._core = engine.core
        self._watchdog = engine.watchdog
        self._blackbox = blackbox
        self._commands = commands
        self._dcp = dcp
        self._last_data_ms = blackbox.last_data_ms
        self._last_private_opens = 0
        self._reconciling = False
        self._probing = False

    # -- queue items --------------------------------------------------------

    def handlers(self) -> dict[str, Handler]:
        """What each queue item runs; a handler that raises is a crash of the module ``TRADER_<KIND>``."""
        handlers: dict[str, Handler] = {
            "public": self._on_public,
            "private": self._on_private,
            "done": self._on_done,
            "rest": self._on_rest,
            "command": self._on_command,
            "lease": self._on_lease,
            "failover_changed": lambda item: self.on_failover_changed(item[1]),
            "config": lambda item: self.on_config_event(item[1]),
            "wake": lambda item: None,
        }
        return {kind: self._guarded(kind, handler) for kind, handler in handlers.items()}

    def _guarded(self, kind: str, handler: Callable[..., object]) -> Callable[..., None]:
        """Run ``handler`` (a queue item's, or a timer's action) so that what it raises is a crash of the module
        ``TRADER_<KIND>`` (MODULE_CRASH: safe mode, a resync), never the loop's end: a process that died on a
        condition that lasts (a full disk) would only die again at start."""
        module = f"TRADER_{kind.upper().replace('-', '_')}"

        def run(*args: object) -> None:
            try:
                handler(*args)
            except Exception as exc:
                self._core.report_crash(module, exc, "")

        return run

    def _on_public(self, item: tuple) -> None:
        _, message, received_ms = item
        self._core.on_public(message, received_ms)
        symbol = message.get("topic", "").rsplit(".", 1)[-1]
        self._last_data_ms[symbol] = received_ms
        self._watchdog.on_market_data(symbol)

    def _on_command(self, item: tuple) -> None:
        if self._ctx.standby:
            return  # operator commands are the leader's: a standby neither runs nor acknowledges them
        self._commands.run(item[1])

    def _on_lease(self, item: tuple) -> None:
        if self._roles is not None:
            self._roles.on_item(item)

    def _on_private(self, item: tuple) -> None:
        if self._ctx.standby:
            return  # a late message of the stream closed on stepping down: the leader stores it
        self._core.on_private(item[1])
        self._blackbox.write_process_state()

    def _on_done(self, item: tuple) -> None:
        _, done, result, error = item
        try:
            done(result, error)
        except Exception as exc:
            self._core.report_crash("EXECUTION_ENGINE", exc, "")
        self._blackbox.write_process_state()

    def _on_rest(self, item: tuple) -> None:
        _, ok, elapsed_ms, kind = item
        self._watchdog.on_rest(ok, elapsed_ms, kind)
        self._core.latency.record("rest", elapsed_ms)

    def on_failover_changed(self, state: FailoverView) -> None:
        risk = self._core.risk
        risk.set_global_block(reasons.SAFE_MODE_ACTIVE if state.safe_mode else None)
        risk.set_trading_enabled(bool(getattr(state, "trading_enabled", True)))
        reason = getattr(state.reason, "value", state.reason)
        self._ctx.events.write(
            "_SYSTEM",
            "FAILOVER_STATE",
            safeMode=state.safe_mode,
            reason=reason,
            recoveryInProgress=state.recovery_in_progress,
        )
        self._blackbox.write_process_state()

    def on_config_event(self, event: ConfigEvent) -> None:
        if isinstance(event, ConfigInvalid):
            self._ctx.report_config_invalid(event.path, event.errors)
        elif isinstance(event, ConfigApplied):
            self._core.apply_config(event.config)
            self._watchdog.apply_config(event.config)
            self._ctx.link.apply_config(event.config.failover)
            self._ctx.apply_alerts_config(event.config.alerts)
            self.apply_leverage(event.config.risk.default_leverage)
            if not self._ctx.standby:
                self.refresh_dcp(reloaded=True)
            reloaded = config_reloaded_alert(event)
            if reloaded is not None:
                self._ctx.alert(reloaded)
            if event.source == "file":  # a STANDBY's file says nothing of the leader's: report_cleared skips it
                self._ctx.report_cleared(FailureType.CONFIG_INVALID.value)

    # -- schedules ----------------------------------------------------------

    def timers(self) -> list[Timer]:
        """What runs on a schedule; an action that raises is a crash of the module ``TRADER_TIMER_<NAME>``.

        A reconciliation, a health check or a config poll that keeps failing would otherwise leave the
        trader trading on what it no longer checks, said only in its log: the crash holds MODULE_CRASH
        (no entries) until the timer runs clean for ``module_crash_quiet_s``.
        """
        engine = self._ctx.config_engine
        leading = self._leading_only
        timers = [
            Timer(0.1, leading(self._core.tick), "tick"),  # resolves unconfirmed orders: the leader's
            Timer(0.5, self.check_health, "watchdog"),
            Timer(2.0, self.probe_rest, "rest-probe"),
            Timer(1.0, self._blackbox.heartbeat, "heartbeat"),
            Timer(
                lambda: engine.config.failover.process_state_interval_s,  # follows a hot reload
                lambda: self._blackbox.write_process_state(force=True),
                "process-state",
            ),
            Timer(2.0, engine.poll, "config"),
            Timer(1.0, leading(self.apply_leverage), "leverage"),
            Timer(15.0, leading(self.reconcile), "reconcile"),
            Timer(DCP_RETRY_EVERY_S, leading(partial(self.refresh_dcp, reloaded=False)), "dcp"),
        ]
        for timer in timers:
            timer.action = self._guarded(f"timer-{timer.name}", timer.action)
        return timers

    def _leading_only(self, action: Callable[[], object]) -> Callable[[], None]:
        """``action`` on the LEADER; nothing on a STANDBY (it changes nothing and judges nothing)."""

        def run() -> None:
            if not self._ctx.standby:
                action()

        return run

    def refresh_dcp(self, *, reloaded: bool) -> None:
        """Put the configured DCP window in force on the leader: set it (gateway), or rebuild the private stream,
        whose bounded build arms DCP and subscribes its topic (a new window, or an arming the exchange refused)."""
        dcp = self._dcp
        if dcp is None:
            return
        step = dcp.due(reloaded=reloaded)
        private = self._ctx.streams.get("private")
        if step == DCP_REBUILD and private is not None:
            private.close()
            private.start()
        elif step == DCP_SET:
            self._engine.dispatcher.submit(dcp.arm, lambda status, error: None)  # arm never raises

    def apply_leverage(self, leverage: int | None = None) -> None:
        """Ask for ``leverage`` on every symbol (a reload), then send what is due through the gateway (retries)."""
        keeper = self._engine.leverage
        if keeper is None:
            return
        if leverage is not None:
            keeper.want(leverage)
        keeper.submit_due()

    def check_files(self) -> None:
        """While the event log or the process state cannot be written (a full disk), write them again; each
        refusal is a crash of EVENT_LOG or PROCESS_STATE_STORE.

        So MODULE_CRASH holds while they are lost, and ends ``module_crash_quiet_s`` after both are written.
        """
        events, store = self._ctx.events, self._ctx.store
        if events.failing and not events.retry_failing():
            failing = events.failing
            self._file_lost("EVENT_LOG", next(iter(failing.values())), files=sorted(failing), lost=events.lost)
        if store.failing is not None:
            self._blackbox.write_process_state(force=True)
            if store.failing is not None:
                self._file_lost("PROCESS_STATE_STORE", store.failing, file=str(store.path))

    def _file_lost(self, module: str, error: str, **details: Any) -> None:
        """Count one refused write of ``module``'s file as a crash of ``module``."""
        report_module_crash(self._ctx, self._watchdog, module, OSError(error),
                            {"module": module, "symbol": "", "error": error, **details})

    def check_health(self) -> None:
        """Feed the watchdog what the streams and latencies show; report what starts, clear what ends."""
        self.check_files()
        streams = self._ctx.streams
        if self._ctx.standby:
            streams["public"].check()  # kept warm (rebuilt when down); the health is the leader's to judge
            return
        for stream in streams.values():
            stream.check()
        private = streams["private"].status
        if private.opens > self._last_private_opens:
            if self._last_private_opens > 0:
                self.resync("private stream reconnected")
            self._last_private_opens = private.opens
        ws_lag = self._core.latency.average("ws")
        if ws_lag is not None:
            self._watchdog.on_latency(ws_lag)
        report = self._watchdog.check(public=streams["public"].status, private=private)
        for event in report.started:
            self._ctx.report_event(event)
        for failure_type in report.cleared:
            self._ctx.report_cleared(failure_type)

    def probe_rest(self) -> None:
        """Ask the exchange the time: REST liveness and latency even when nothing trades."""
        if self._probing:
            return
        self._probing = True

        def done(result: Any, error: BaseException | None) -> None:
            self._probing = False

        self._engine.dispatcher.submit(self._engine.rest.server_time_ms, done)

    def resync(self, why: str) -> None:
        """Bring local state to exchange truth over REST; the exchange does not replay missed events."""
        self._core.execution.distrust()
        try:
            counts = sync_from_exchange(self._core.execution)
        except ExchangeError as exc:
            logger.warning("resync after %s failed: %s", why, exc)
            return
        self._ctx.events.write("_SYSTEM", "RESYNC", why=why, **counts)
        self._blackbox.write_process_state()

    def reconcile(self) -> None:
        """Compare local state with the exchange in the background; NON_SYNC_STATE if they stay apart."""
        if self._reconciling:
            return
        self._reconciling = True
        rest = self._engine.rest
        recent_window_ms = self._ctx.config_engine.config.failover.recent_order_window_ms  # the config at the ask

        def fetch() -> tuple[list, list]:
            return rest.positions(), rest.open_orders()

        def done(result: Any, error: BaseException | None) -> None:
            self._reconciling = False
            if error is None:
                self._compare(*result, recent_window_ms=recent_window_ms)

        self._engine.dispatcher.submit(fetch, done)

    def _compare(self, remote_positions: list, remote_orders: list, *, recent_window_ms: int) -> None:
        state = self._core.state
        created = {o.order_link_id: o.created_ms for o in state.orders.values()}
        local_orders = [o for o in state.open_orders() if o.status not in (INTENT, SUBMITTED)]
        positions = diff_positions(
            [position_from_local(p) for p in state.positions.values()],
            [position_from_exchange(p) for p in remote_positions],
        )
        orders = diff_orders(
            [order_from_local(o) for o in local_orders],
            [order_from_exchange(o) for o in remote_orders],
            now_ms=self._ctx.clock.now_ms(),
            recent_window_ms=recent_window_ms,
            created_ms_of=lambda snap: created.get(snap.client_order_id or ""),
        )
        self._watchdog.on_reconciliation(positions, orders)


# -- failures the engine and the config engine report ------------------------


def report_mismatch(ctx: TraderContext, kind: str, details: dict[str, Any]) -> None:
    """The private stream (or the pre-entry check) showed an order or position this trader never made: local state
    is not the truth."""
    ctx.report(
        FailureType.NON_SYNC_STATE,
        FailureSource.RECONCILER,
        f"{kind.replace('_', ' ').lower()} on {details.get('symbol', '?')}: appeared behind the trader's back",
        {"kind": kind, **details, "symbols": [details["symbol"]] if "symbol" in details else []},
    )


def report_module_crash(
    ctx: TraderContext, watchdog: Watchdog, module: str, exc: BaseException, details: dict[str, Any]
) -> None:
    """A pipeline module threw: the watchdog decides whether this starts a MODULE_CRASH episode."""
    event = watchdog.on_crash(module, f"{module} crashed: {details['error']}", details)
    if event is not None:
        ctx.report_event(event)
