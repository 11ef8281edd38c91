"""The simulated exchange as one object: engine, market feed, faults, streams and state file.

Everything here runs on the server's asyncio loop thread, so the engine needs no lock.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from trading.marketdata.instruments import DEFAULT_INSTRUMENTS, InstrumentSpec

from . import payloads
from .auth import Credentials
from .commit import GroupCommit, read_log, set_aside_log, wal_path_for
from .constants import DEFAULT_API_KEY, DEFAULT_API_SECRET, INITIAL_BALANCE
from .dcp import CANCEL_BY_DCP, FUTURE_TOPIC, HEARTBEAT_TIMEOUT_S, DcpWatch
from .faults import FaultRegistry
from .history_file import history_path_for
from .hub import Hub
from .journal import ORIGIN_DCP, ORIGIN_MARKET, Journal
from .market import MarketFeed
from .matching import MatchingEngine
from .models import Changes
from .persistence import CorruptStateError, load_state, state_bytes

log = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


class SimExchange:
    """State and behaviour of the simulator, independent of HTTP routing."""

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        api_secret: str = DEFAULT_API_SECRET,
        instruments: Mapping[str, InstrumentSpec] = DEFAULT_INSTRUMENTS,
        state_path: Path | None = None,
        reset: bool = False,
        initial_balance: Decimal = INITIAL_BALANCE,
        fault_seed: int = 0,
    ) -> None:
        self.creds = Credentials(api_key, api_secret)
        self.engine = MatchingEngine(instruments, clock=now_ms, initial_balance=initial_balance)
        self.faults = FaultRegistry(seed=fault_seed)
        self.hub = Hub(self)
        self.dcp = DcpWatch()
        self.feed = MarketFeed(self.engine, wanted=self.hub.wanted)
        self.state_path = state_path
        # The exchange's own record, next to the state file (in memory only without one).
        self.journal = Journal(history_path_for(state_path) if state_path is not None else None)
        # Every change on disk before anyone hears of it, one fsync a batch (see ``commit``).
        self.commit = GroupCommit(state_path, self._snapshot, self.journal.flush)
        self.started_ms = now_ms()
        self.messages_played = 0
        replayed = self._recover(state_path) if state_path is not None and not reset else 0
        self.journal.start(self.engine, fresh=reset)
        if state_path is not None and (reset or replayed):
            self.persist()  # the log starts empty again

    # -- state -------------------------------------------------------------
    def _recover(self, state_path: Path) -> int:
        """Read the state file, then apply the change log's later lines; return how many were applied."""
        try:
            load_state(state_path, restore=self.engine.load_state, restore_journal=self.journal.restore,
                       restore_lsn=self.commit.resume)
        except CorruptStateError as exc:
            log.error("%s", exc)
            self.engine.reset()  # a restore that failed half-way must not leave half an account
            set_aside_log(wal_path_for(state_path))  # its changes apply to the state that is gone
            return 0
        applied = 0
        for record in read_log(wal_path_for(state_path)):
            lsn = record.get("lsn")
            if not isinstance(lsn, int) or lsn <= self.commit.lsn:
                continue  # already in the state file (a checkpoint that had not emptied the log yet)
            try:
                self.engine.apply_logged(record)
                self.journal.restore(record.get("journal"))
            except Exception:
                log.exception("simexchange: change log line %s cannot be applied; the rest is dropped", lsn)
                break
            self.commit.resume(lsn)
            applied += 1
        self.engine.forget_old_closed()
        return applied

    def _snapshot(self, lsn: int) -> bytes:
        return state_bytes(self.engine.to_state(), self.journal.saved_form(self.engine.orders), lsn)

    def persist(self) -> None:
        """Write the whole exchange truth now (a checkpoint) and empty the change log, the history's new lines
        first; outside a running server, or after its writer stopped (start, shutdown, tests)."""
        self.commit.checkpoint_now()

    async def durable(self) -> None:
        """Return once every change made so far is on disk (answer a request only after this)."""
        await self.commit.durable()

    def reset(self) -> None:
        """Start the account clean: no orders, positions or executions; faults cleared.

        The history goes on: the open orders are recorded cancelled and the
        positions flat (origin ``sim``) before they are forgotten.
        """
        self.journal.record_reset(self.engine, now_ms())
        self.engine.reset()
        self.faults.clear()
        self.sync_fault_effects()
        if self.commit.persistent:
            self.commit.want_checkpoint()  # the caller awaits ``durable()``

    def close(self) -> None:
        """Write what is left of the history and close its file (the state is written by ``persist``)."""
        self.commit.close()
        self.journal.close()

    def sync_fault_effects(self) -> None:
        """Push fault state that lives in the engine (slippage) into it."""
        self.engine.slippage_bps = {s: Decimal(str(b)) for s, b in self.faults.slippage().items()}

    # -- events --------------------------------------------------------------
    def publish(self, changes: Changes, *, origin: str) -> None:
        """Record what changed in the history and the change log, then push it on the private stream in
        Bybit's order once it is on disk.

        ``origin`` says who caused it (``journal.ORIGINS``): ``api``, ``sim``, ``market`` or ``dcp``.
        """
        if not changes:
            return
        e = self.engine
        ts = now_ms()
        self.journal.record(e, changes, origin, ts)
        if self.commit.persistent:
            self.commit.stage(self._logged(changes))
        if changes.orders:
            self._private("order", [payloads.order_item(e, o, ws=True) for o in changes.orders], ts)
        if changes.executions:
            self._private("execution", [payloads.execution_item(e, x, ws=True) for x in changes.executions], ts)
        if changes.positions:
            self._private("position", [payloads.position_item(e, e.position(s), ws=True) for s in changes.positions],
                          ts)
        if changes.wallet:
            self._private("wallet", [payloads.wallet_item(e)], ts)

    def _logged(self, changes: Changes) -> dict[str, Any]:
        """Return the change log's line for ``changes``: what they left, as the state file keeps it."""
        e = self.engine
        symbols = dict.fromkeys([*changes.positions, *(x.symbol for x in changes.executions)])
        return {
            "orders": [o.to_state() for o in changes.orders],
            "executions": [x.to_state() for x in changes.executions],
            "positions": [e.positions[s].to_state() for s in symbols if s in e.positions],
            "wallet": e.wallet.to_state(),
            "seq": e.last_seq,
            "journal": {"seq": self.journal.seq,
                        "orderOrigins": self.journal.creators(o.order_id for o in changes.orders)},
        }

    def _private(self, topic: str, data: list[dict[str, Any]], ts: int) -> None:
        if not self.hub.wanted_private(topic):
            return
        msg = {"id": uuid.uuid4().hex, "topic": topic, "creationTime": ts, "data": data}
        self.commit.after_durable(lambda: self.hub.publish_private(topic, msg))

    def check_dcp(self, now: float) -> None:
        """Cancel every derivatives order once all dcp.future connections have been gone for the window."""
        alive = self.hub.heard_from(FUTURE_TOPIC, now - HEARTBEAT_TIMEOUT_S)
        if not self.dcp.check(now, alive):
            return
        _, changes = self.engine.cancel_all(None, cancel_type=CANCEL_BY_DCP)
        log.warning("simexchange: DCP fired: %d orders cancelled", len(changes.orders))
        self.publish(changes, origin=ORIGIN_DCP)

    def play(self, msg: dict[str, Any]) -> None:
        """Apply one public market message and fan out what it produces."""
        out, changes = self.feed.ingest(msg, now_ms())
        self.messages_played += 1
        for public in out:
            self.hub.publish_public(public)
        self.publish(changes, origin=ORIGIN_MARKET)

    # -- views -----------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """Return the state shown by GET /sim/state."""
        e = self.engine
        return {
            "time": now_ms(),
            "orders": [payloads.order_item(e, o) for o in e.open_orders()],
            "positions": [payloads.position_item(e, p) for p in e.positions.values() if p.size],
            "wallet": payloads.wallet_item(e),
            "executions": len(e.executions),
            "faults": self.faults.describe(),
            "connections": self.hub.describe(),
            "messagesPlayed": self.messages_played,
            "bookMessagesRejected": self.feed.rejected,
            "lastPrice": {s: str(p) for s, p in e.last_price.items()},
            # Group commit: changes staged, and the writes (one fsync each) that made them durable.
            "dcp": self.dcp.describe(),
            "commit": {"changes": self.commit.lsn, "writes": self.commit.batches},
        }
