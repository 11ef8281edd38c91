"""Startup steps: what the previous run left, registering the environment, the streams and the bus.

Startup and crash recovery share this path: every start reads the previous
process state and reports PROCESS_RESTART / UNEXPECTED_SHUTDOWN /
DATA_CORRUPTION, so the FailoverManager converges with the exchange before the
trader trades.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from failover.domain import files
from failover.domain.enums import FailureSource, FailureType, Phase, RunMode
from failover.domain.process_state import (
    MAX_STATE_BYTES,
    ProcessStateCorrupt,
    ProcessStateStore,
    classify_previous_run,
    startup_failure_event,
)
from failover.domain.types import FailureEvent, ProcessState
from trading.engine.core import TradingCore
from trading.engine.execution import Dispatcher
from trading.engine.leverage import LeverageKeeper
from trading.exchange.connect import rest_for, socket_factory
from trading.exchange.port import DcpPort, ExchangePort, StreamSink
from trading.exchange.streams import ManagedStream, private_subscriber, public_subscriber
from trading.marketdata.instruments import InstrumentSpec
from trading.trader.context import Engine, TraderContext, TraderSettings
from trading.trader.dcp import DcpArming, FencedDcp

if TYPE_CHECKING:
    from scalper_site.bus import BusListener

logger = logging.getLogger("scalper.trader")


# What the system folder holds for a trader: state only this user may read (the mode is fixed at every start).
STATE_FILES = ("process_state.json", "process_state.previous.json", "recovery_plan.json")


def secure_system_folder(system: Path) -> None:
    """Make the data folder and its ``system/`` folder ``0700`` and the state files in it ``0600``.

    Files written by this version are created private; this fixes what an older
    version or a copy with a loose umask left readable. A failure is logged, not
    raised: a mode that cannot be fixed must not keep the trader from starting.
    """
    try:
        files.secure_folder(system.parent)
        files.secure_folder(system)
        for name in STATE_FILES:
            files.secure_file(system / name)
    except OSError as exc:
        logger.warning("cannot make %s private: %s", system, exc)


def keep_previous(store: ProcessStateStore) -> None:
    """Copy the state file to ``process_state.previous.json`` (0600, atomic) as evidence for the recovery plan."""
    target = store.path.with_name("process_state.previous.json")
    try:
        files.atomic_write_bytes(target, files.read_bounded(store.path, MAX_STATE_BYTES))
    except (OSError, ValueError) as exc:  # the copy is evidence, not a condition of the start
        logger.warning("cannot keep the previous process state in %s: %s", target.name, exc)


def remove_stale_temp_files(store: ProcessStateStore) -> None:
    """Delete the temp files a writer killed mid-write left beside the state file (never read, only in the way).

    Called after the verdict on the previous run; each trader has a data folder of its own.
    """
    try:
        removed = store.remove_stale_temp_files()
    except OSError as exc:  # litter, not a condition of the start
        logger.warning("cannot remove stale temp files beside %s: %s", store.path.name, exc)
        return
    if removed:
        logger.warning("removed %d temp file(s) a killed writer left: %s", len(removed),
                       ", ".join(p.name for p in removed))


def previous_run(store: ProcessStateStore, *, now: datetime) -> list[FailureEvent]:
    """Read the previous process state; return the failures this start must report, stamped ``now``.

    Every bad state file (unreadable, not a file, not JSON, the wrong shape, an
    absurd pid) has been moved aside by ``store.load`` and is reported as
    DATA_CORRUPTION: the recovery then works from the exchange's truth.
    """
    secure_system_folder(store.path.parent)
    try:
        previous = store.load()
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
    verdict = classify_previous_run(previous)  # the pid decides nothing: the account lease does
    remove_stale_temp_files(store)
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
    keep_previous(store)
    return [startup_failure_event(previous, verdict, at=now)]


def record_start(ctx: TraderContext) -> None:
    """Write a fresh process state: this process, STARTING, nothing held yet.

    A write the disk refuses does not stop the start: the state is kept in memory, the store says it is
    failing, and the health check reports it (a crash of PROCESS_STATE_STORE) and writes it again.
    """
    s = ctx.settings
    state = ProcessState(
        last_update=ctx.clock.now(),
        pid=os.getpid(),
        run_mode=RunMode(s.mode),
        phase=Phase.STARTING,
        active_symbols=tuple(s.symbols),
    )
    try:
        ctx.store.save(state)
    except OSError as exc:
        ctx.store.keep(state)
        logger.error("process state not written at start (%s): kept in memory, written again once it can be", exc)


def register_environment(ctx: TraderContext) -> None:
    """Tell the FailoverManager where this trader runs (recovery steps build the same exchange adapter)."""
    s = ctx.settings
    ctx.services.environment_register(
        run_id=s.run_id,
        context={
            "mode": s.mode,
            "exchange": s.target.to_context(),
            "dataDir": str(s.data_dir),
            "symbols": s.symbols,
            "pid": os.getpid(),
            **({"leaseAccount": ctx.lease.account, "leaseTtlS": ctx.lease.ttl_s} if ctx.lease is not None else {}),
        },
    )


def leverage_keeper(
    ctx: TraderContext,
    core: TradingCore,
    rest: ExchangePort,
    dispatcher: Dispatcher,
    instruments: dict[str, InstrumentSpec],
) -> LeverageKeeper:
    """The keeper of each symbol's leverage, asked for the config's ``risk.default_leverage``.

    Entries on a symbol wait until the exchange confirmed its leverage; the
    keeper tells the risk engine, which sizes every entry's margin with it.
    """
    keeper = LeverageKeeper(
        symbols=ctx.settings.symbols,
        instruments=instruments,
        exchange=rest,
        dispatcher=dispatcher,
        clock=ctx.clock,
        on_applied=core.risk.set_leverage,
        events=ctx.events,
    )
    keeper.want(ctx.config_engine.config.risk.default_leverage)
    return keeper


def apply_leverage(engine: Engine) -> None:
    """Set each symbol's leverage now, before the streams (and so any entry) start; a failure is retried later."""
    if engine.leverage is not None:
        engine.leverage.apply_now()


def dcp_arming(ctx: TraderContext) -> DcpArming | None:
    """Bybit's DCP, armed by the leader at each build of its private stream (None in a dry run: nothing is
    changed on the account). The window is read from the config in force, so a hot reload is seen."""
    s = ctx.settings
    if s.mode == "DRY_RUN":
        return None
    port: DcpPort = rest_for(s.target)  # a client of its own: arming runs on the stream's build thread
    if ctx.lease is not None:  # setting the window is a change to the account: it proves the lease first
        port = FencedDcp(port, ctx.lease)
    return DcpArming(
        port, window_s=lambda: ctx.config_engine.config.exchange.dcp_window_s, is_leader=lambda: not ctx.standby
    )


def build_streams(
    settings: TraderSettings, sink: StreamSink, *, dcp: DcpArming | None = None
) -> dict[str, ManagedStream]:
    """The public and private streams, not yet started; with ``dcp``, each private build arms DCP first."""
    private = dcp.subscriber(private_subscriber) if dcp is not None else private_subscriber
    channels = {"public": ("linear", public_subscriber(settings.symbols)), "private": ("private", private)}
    return {
        name: ManagedStream(
            name,
            factory=socket_factory(
                settings.target,
                channel_type,
                ping_interval=settings.ping_interval_s,
                ping_timeout=settings.ping_timeout_s,
                retries=settings.stream_retries,
            ),
            subscribe=subscribe,
            sink=sink,
        )
        for name, (channel_type, subscribe) in channels.items()
    }


def stream_sink(ctx: TraderContext) -> StreamSink:
    """Put stream messages on the pipeline queue, stamped with their arrival time."""

    def sink(name: str, message: dict[str, Any]) -> None:
        if "topic" not in message:
            return  # auth and subscription answers
        ctx.post((name, message, ctx.clock.now_ms()))

    return sink


def start_bus(ctx: TraderContext) -> BusListener:
    """Listen to the environment's bus: operator commands go on the queue, failover changes to the link."""
    from scalper_site.bus import BusListener

    def on_message(message: dict[str, Any]) -> None:
        if message.get("kind") == "trader.command":
            ctx.post(("command", message.get("payload") or {}))
        else:
            ctx.link.on_bus_message(message)

    return BusListener(on_message, run_id=ctx.settings.run_id).start()
