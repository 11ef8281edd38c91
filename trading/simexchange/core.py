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
from .constants import DEFAULT_API_KEY, DEFAULT_API_SECRET, INITIAL_BALANCE
from .faults import FaultRegistry
from .history_file import history_path_for
from .hub import Hub
from .journal import ORIGIN_MARKET, Journal
from .market import MarketFeed
from .matching import MatchingEngine
from .models import Changes
from .persistence import CorruptStateError, load_state, save_state

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
        self.feed = MarketFeed(self.engine, wanted=self.hub.wanted)
        self.state_path = state_path
        # The exchange's own record, next to the state file (in memory only without one).
        self.journal = Journal(history_path_for(state_path) if state_path is not None else None)
        self.dirty = False
        self.started_ms = now_ms()
        self.messages_played = 0
        if state_path is not None and not reset:
            try:
                load_state(state_path, restore=self.engine.load_state, restore_journal=self.journal.restore)
            except CorruptStateError as exc:
                log.error("%s", exc)
                self.engine.reset()  # a restore that failed half-way must not leave half an account
        self.journal.start(self.engine, fresh=reset)
        if reset and state_path is not None:
            self.persist()

    # -- state -------------------------------------------------------------
    def persist(self) -> None:
        """Write the exchange truth now (before the client hears about a change), the history's new lines first.

        The history is appended and flushed, not fsynced: the state write's fsync
        is the only one per change (see ``history_file``).
        """
        self.dirty = False
        if self.state_path is not None:
            self.journal.flush()
            save_state(self.state_path, self.engine.to_state(), self.journal.saved_form(self.engine.orders))

    def persist_if_dirty(self) -> None:
        if self.dirty:
            self.persist()

    def reset(self) -> None:
        """Start the account clean: no orders, positions or executions; faults cleared.

        The history goes on: the open orders are recorded cancelled and the
        positions flat (origin ``sim``) before they are forgotten.
        """
        self.journal.record_reset(self.engine, now_ms())
        self.engine.reset()
        self.faults.clear()
        self.sync_fault_effects()
        self.persist()

    def close(self) -> None:
        """Write what is left of the history and close its file (the state is written by ``persist``)."""
        self.journal.close()

    def sync_fault_effects(self) -> None:
        """Push fault state that lives in the engine (slippage) into it."""
        self.engine.slippage_bps = {s: Decimal(str(b)) for s, b in self.faults.slippage().items()}

    # -- events --------------------------------------------------------------
    def publish(self, changes: Changes, *, origin: str) -> None:
        """Record what changed in the history, then push it on the private stream in Bybit's order.

        ``origin`` says who caused it (``journal.ORIGINS``): ``api``, ``sim`` or ``market``.
        """
        if not changes:
            return
        self.dirty = True
        e = self.engine
        ts = now_ms()
        self.journal.record(e, changes, origin, ts)
        if changes.orders:
            self._private("order", [payloads.order_item(e, o, ws=True) for o in changes.orders], ts)
        if changes.executions:
            self._private("execution", [payloads.execution_item(e, x, ws=True) for x in changes.executions], ts)
        if changes.positions:
            self._private("position", [payloads.position_item(e, e.position(s), ws=True) for s in changes.positions],
                          ts)
        if changes.wallet:
            self._private("wallet", [payloads.wallet_item(e)], ts)

    def _private(self, topic: str, data: list[dict[str, Any]], ts: int) -> None:
        if not self.hub.wanted_private(topic):
            return
        self.hub.publish_private(topic, {"id": uuid.uuid4().hex, "topic": topic, "creationTime": ts, "data": data})

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
        }
