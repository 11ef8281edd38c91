"""The trader's role on its account: LEADER (holds the lease, trades) or STANDBY (warm, sends nothing).

Every trader of one account tries the account lease (``trading.exchange.lease``)
at start. The holder leads: today's startup. The others stand by: config,
state and public market data loaded and kept warm, no orders, no entries, no
recovery actions, no failure reports, no operator commands (those are the
leader's), a heartbeat of their own.

``LeaseKeeper`` is the lease's thread: it renews a held lease every third of
its TTL, and while none is held it tries to take it. It only posts what
happened on the pipeline queue; ``RoleSwitch`` acts on it there:

- lease taken (``lead``): run the startup recovery on the previous holder's
  behalf before any entry: reload the local state, register the environment,
  report UNEXPECTED_SHUTDOWN (PROCESS_RESTART when the previous holder gave the
  lease back) so safe mode goes on and the recovery plan resyncs positions and
  orders and resolves unconfirmed intents by orderLinkId; then set leverage,
  open the private stream and trade once the plan clears safe mode;
- lease lost (``step_down``): the fenced port already refuses every write;
  report NON_SYNC_STATE (what this trader sent last is unconfirmed) so safe
  mode goes on, close the private stream, stand by.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any

from failover.domain.enums import RESTART_TYPES, FailureSource, FailureType
from failover.domain.types import FailureEvent
from trading.exchange.lease import LEADER, STANDBY, AccountLease, Attempt, LeaseRecord
from trading.trader import startup
from trading.trader.context import Post, TraderContext

if TYPE_CHECKING:
    from trading.trader.blackbox import Blackbox
    from trading.trader.commands import Commands
    from trading.trader.context import Engine
    from trading.trader.dcp import DcpArming

logger = logging.getLogger("scalper.trader")

LEASE_SOURCE = "ACCOUNT_LEASE"
LEAD_MODULE = "TRADER_LEASE"  # the module a takeover's failed state reload crashes, as the lease handler's crash
MAX_ACQUIRE_EVERY_S = 1.0  # a standby asks at least this often: the takeover waits for the lease's TTL, not for us


class LeaseKeeper:
    """The lease thread: renew while held (every TTL/3), try to take it while not; post each outcome."""

    def __init__(self, lease: AccountLease, post: Post) -> None:
        self._lease = lease
        self._post = post
        self._stop = threading.Event()
        self._last_reason: str | None = None
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)

    def start(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def interval_s(self) -> float:
        third = self._lease.ttl_s / 3
        return third if self._lease.token is not None else min(third, MAX_ACQUIRE_EVERY_S)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s()):
            try:
                self.turn()
            except Exception:  # never let the lease thread die: a dead keeper is a lease that lapses
                logger.exception("lease keeper turn failed")

    def turn(self) -> None:
        """One renew (held) or one acquire attempt (not held); post ("lease", kind, detail)."""
        lease = self._lease
        if lease.token is not None:
            renewed = lease.try_renew()
            if not renewed.held:
                self._post(("lease", "lost", renewed.reason))
            return
        attempt = lease.try_acquire()
        if attempt.held:
            self._last_reason = None
            self._post(("lease", "acquired", attempt))
        elif attempt.reason != self._last_reason:  # say why once per reason, not every second
            self._last_reason = attempt.reason
            self._post(("lease", "waiting", attempt.reason))


def first_attempt(ctx: TraderContext) -> Attempt | None:
    """Try the lease once at start: LEADER when taken (or when this trader runs without one), else STANDBY."""
    if ctx.lease is None:
        ctx.role = LEADER
        return None
    attempt = ctx.lease.try_acquire()
    ctx.role = LEADER if attempt.held else STANDBY
    if attempt.held:
        logger.info("account lease taken (token %s): LEADER", attempt.record.token if attempt.record else "?")
    else:
        logger.warning("account lease not taken (%s): STANDBY", attempt.reason)
    ctx.events.write("_SYSTEM", "ROLE", role=ctx.role, reason=attempt.reason, lease=ctx.lease.view())
    return attempt


def takeover_events(
    previous: LeaseRecord | None, *, holder: str, already: list[FailureEvent], at: datetime
) -> list[FailureEvent]:
    """The failures a new leader reports for the previous holder: ``already`` (its own start verdict) merged.

    A previous holder that gave the lease back stopped gracefully (PROCESS_RESTART); one whose lease
    lapsed died or was cut off mid-flight (UNEXPECTED_SHUTDOWN, the full resync). One restart verdict
    is reported, the stronger one.
    """
    if previous is None or previous.holder == holder:
        return list(already)
    graceful = previous.ttl_s == 0
    kind = FailureType.PROCESS_RESTART if graceful else FailureType.UNEXPECTED_SHUTDOWN
    restarts = {e.type for e in already if e.type in RESTART_TYPES}
    if FailureType.UNEXPECTED_SHUTDOWN in restarts or (graceful and restarts):
        return list(already)
    how = "gave the lease back" if graceful else "let the lease lapse (died, frozen or cut off)"
    event = FailureEvent(
        timestamp=at,
        type=kind,
        source=LEASE_SOURCE,
        message=f"Took over the account: the previous leader {previous.holder} {how}",
        details={
            "previousHolder": previous.holder,
            "previousHost": previous.host,
            "previousPid": previous.pid,
            "previousToken": previous.token,
            "previousRenewedAt": previous.renewed_at,
            "firstStart": False,
        },
    )
    return [e for e in already if e.type not in RESTART_TYPES] + [event]


class RoleSwitch:
    """Change the role on the pipeline thread: lead (startup recovery first) or stand by (nothing sent)."""

    def __init__(
        self, ctx: TraderContext, *, start_failures: list[FailureEvent], dcp: DcpArming | None = None
    ) -> None:
        self._ctx = ctx
        self._dcp = dcp  # armed again by the private stream's build on leading; told on stepping down
        self._pending = list(start_failures)  # this start's verdict: reported by the first lead
        self._engine: Engine | None = None
        self._blackbox: Blackbox | None = None
        self._commands: Commands | None = None

    def attach(self, engine: Engine, blackbox: Blackbox, commands: Commands) -> None:
        self._engine, self._blackbox, self._commands = engine, blackbox, commands

    def on_item(self, item: tuple) -> None:
        """A ("lease", kind, detail) item from the keeper."""
        _, kind, detail = item
        if kind == "acquired":
            self.lead(detail)
            self.lead_engine()
        elif kind == "lost":
            self.step_down(str(detail))
        else:
            logger.warning("standing by: %s", detail)
            self._ctx.events.write("_SYSTEM", "LEASE_WAITING", reason=str(detail)[:300])

    def lead(self, attempt: Attempt | None) -> None:
        """Become LEADER: register the environment and report the start (or takeover) verdict; safe mode goes on."""
        ctx = self._ctx
        if self._commands is not None:
            try:
                self._commands.reload_state()  # the previous leader's orders and positions, as the database holds
            except Exception as exc:
                # The database is down. Leading anyway is the safe way on: the reports below latch safe mode,
                # and the crash's recovery plan resyncs from the exchange and reloads the state. Left half-led,
                # this trader would hold the lease as a standby, and nobody would trade again.
                if self._engine is not None:
                    self._engine.core.report_crash(LEAD_MODULE, exc, "")
                logger.error("state not reloaded at takeover (%s); leading in safe mode until it is", exc)
        ctx.role = LEADER  # on the pipeline thread: no entry can run before the reports below latch safe mode
        try:
            startup.register_environment(ctx)
        except Exception:  # the reports must still latch safe mode: a leader never trades unlatched
            logger.exception("environment not registered at takeover; reporting the takeover regardless")
        holder = ctx.lease.holder if ctx.lease is not None else ""
        previous = attempt.previous if attempt is not None else None
        events = takeover_events(previous, holder=holder, already=self._pending, at=ctx.clock.now())
        self._pending = []
        for event in events:
            ctx.report_event(event)
        ctx.report_config_standing()  # its config's refusal, or the end of an earlier leader's
        ctx.events.write("_SYSTEM", "LEASE_ACQUIRED", lease=self.lease_view(),
                         previousHolder=previous.holder if previous else None)

    def lead_engine(self) -> None:
        """The leader's part once the engine exists: leverage, then the private stream."""
        if self._engine is not None:
            startup.apply_leverage(self._engine)  # before any entry, as at a first start
        private = self._ctx.streams.get("private")
        if private is not None:  # a standby's is closed: this one is built fresh (and arms DCP, if configured)
            if self._engine is not None:
                self._engine.watchdog.expect_private_connect()  # standing by without it was no outage
            private.close()
            private.start()
        if self._blackbox is not None:
            self._blackbox.write_process_state(force=True)

    def step_down(self, why: str) -> None:
        """The lease is gone: nothing more is sent (the port refuses), safe mode goes on, stand by."""
        ctx = self._ctx
        if ctx.standby:
            return
        view = self.lease_view()
        logger.error("account lease lost (%s): stopped sending, standing by", why)
        ctx.report(
            FailureType.NON_SYNC_STATE,
            FailureSource.EXECUTION_ENGINE,
            f"Account lease lost ({why}): this trader sends nothing more and stands by",
            {"kind": "LEASE_LOST", "reason": why[:300], "lease": view},
        )
        ctx.role = STANDBY
        private = ctx.streams.get("private")
        if private is not None:
            private.close()  # its events are the new leader's to store; its DCP topic goes with it
        if self._dcp is not None:
            self._dcp.stand_by()
        ctx.events.write("_SYSTEM", "LEASE_LOST", reason=why[:300], lease=view)
        if self._blackbox is not None:
            self._blackbox.write_process_state(force=True)

    def lease_view(self) -> dict[str, Any] | None:
        return self._ctx.lease.view() if self._ctx.lease is not None else None
