"""Each traded symbol's leverage: what the config wants on the exchange, and what the exchange confirmed.

``risk.default_leverage`` is the wish; the instrument's leverage filter caps it
(Bybit refuses more than ``maxLeverage``, so more is never asked for). The
trader sets every symbol's leverage at start, before the first entry, and again
on each hot reload that changes it. The port's adapters take Bybit's 110043
("leverage not modified") as success. A failed call is retried through the
dispatcher (the trader's gateway thread, never the pipeline's), with backoff, at
most ``MAX_ATTEMPTS`` times per wish; a later config reload tries a symbol that
gave up again. Until the exchange confirmed a leverage for a symbol, entries on
it wait (``RiskEngine.set_leverage``): their margin is sized with the applied
leverage, never with the wish. DRY_RUN sends nothing: the wish counts as
applied, so its entries are sized as they would be.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any

from failover.domain.clock import Clock
from trading.engine.eventlog import EventLog
from trading.engine.execution import Dispatcher
from trading.exchange.dryrun import OrderNotSent
from trading.exchange.port import ExchangeError, ExchangePort
from trading.marketdata.instruments import InstrumentSpec

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5  # calls per wish before the symbol gives up (until the next config reload)
FIRST_RETRY_MS = 2_000
MAX_RETRY_MS = 60_000

PENDING = "PENDING"  # wanted, not confirmed yet (a call is due or on its way)
APPLIED = "APPLIED"  # the exchange holds the wanted leverage
RETRYING = "RETRYING"  # the last call failed; another is due after a backoff
FAILED = "FAILED"  # MAX_ATTEMPTS calls failed; entries keep the last applied leverage, or wait
NOT_SENT = "NOT_SENT"  # DRY_RUN: never sent; the wanted leverage is what entries are sized with

AppliedListener = Callable[[str, Decimal | None], None]
"""Told ``(symbol, leverage)`` whenever the leverage entries must use changes (None: not known yet)."""


@dataclass(slots=True)
class SymbolLeverage:
    """One symbol's wish and what came of it."""

    wanted: Decimal
    applied: Decimal | None = None
    state: str = PENDING
    attempts: int = 0  # failed calls for the current wish
    error: str = ""
    next_at_ms: int = 0  # monotonic: when the next call is due
    in_flight: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the heartbeat's shape (numbers as JSON numbers, the error bounded)."""
        return {
            "wanted": float(self.wanted),
            "applied": float(self.applied) if self.applied is not None else None,
            "state": self.state,
            "attempts": self.attempts,
            "error": self.error[:200] or None,
        }


class LeverageKeeper:
    """Bring each symbol's leverage on the exchange to the configured one; say where each symbol stands.

    Called from the pipeline thread only; ``apply_now`` calls the exchange on
    that thread (start, before the streams run), ``submit_due`` through the
    dispatcher.
    """

    def __init__(
        self,
        *,
        symbols: Sequence[str],
        instruments: Mapping[str, InstrumentSpec],
        exchange: ExchangePort,
        dispatcher: Dispatcher,
        clock: Clock,
        on_applied: AppliedListener,
        events: EventLog | None = None,
    ) -> None:
        self._symbols = list(symbols)
        self._instruments = instruments
        self._exchange = exchange
        self._dispatcher = dispatcher
        self._clock = clock
        self._on_applied = on_applied
        self._events = events
        self._state: dict[str, SymbolLeverage] = {}

    # -- wishes -------------------------------------------------------------

    def want(self, leverage: int) -> list[str]:
        """Ask for ``leverage`` on every symbol (capped by its filter); return the symbols that now need a call.

        A symbol already asked for the same leverage is left alone, unless it gave
        up: a reload is the operator's way to make it try again.
        """
        due: list[str] = []
        for symbol in self._symbols:
            target = self._capped(symbol, Decimal(leverage))
            entry = self._state.get(symbol)
            if entry is None:
                self._state[symbol] = SymbolLeverage(wanted=target)
                self._on_applied(symbol, None)  # unknown until the exchange answers: entries wait
            elif entry.wanted != target or entry.state == FAILED:
                # Asked even when it was applied before: the exchange's answer (110043 at worst) is the truth.
                entry.wanted, entry.attempts, entry.error, entry.next_at_ms = target, 0, "", 0
                entry.state = PENDING
            if self._state[symbol].state == PENDING:
                due.append(symbol)
        return due

    def _capped(self, symbol: str, leverage: Decimal) -> Decimal:
        spec = self._instruments.get(symbol)
        if spec is not None and spec.max_leverage > 0 and leverage > spec.max_leverage:
            return spec.max_leverage
        return leverage

    # -- calls --------------------------------------------------------------

    def apply_now(self) -> None:
        """Set every due symbol's leverage on this thread, one call each (start: before any entry can go out)."""
        for symbol, entry in list(self._due()):
            try:
                self._exchange.set_leverage(symbol, entry.wanted)
            except ExchangeError as exc:
                self._settle(symbol, entry.wanted, exc)
            else:
                self._settle(symbol, entry.wanted, None)

    def submit_due(self) -> None:
        """Hand every due call to the dispatcher; each outcome comes back on the pipeline thread."""
        for symbol, entry in list(self._due()):
            entry.in_flight = True
            self._dispatcher.submit(
                partial(self._exchange.set_leverage, symbol, entry.wanted),
                partial(self._done, symbol, entry.wanted),
            )

    def _due(self) -> Iterator[tuple[str, SymbolLeverage]]:
        now = self._clock.monotonic_ms()
        for symbol, entry in self._state.items():
            if entry.state in (PENDING, RETRYING) and not entry.in_flight and entry.next_at_ms <= now:
                yield symbol, entry

    def _done(self, symbol: str, value: Decimal, result: object, error: BaseException | None) -> None:
        self._settle(symbol, value, error)

    def _settle(self, symbol: str, value: Decimal, error: BaseException | None) -> None:
        entry = self._state[symbol]
        entry.in_flight = False
        if isinstance(error, OrderNotSent):
            entry.state, entry.error = NOT_SENT, ""
            self._confirm(symbol, entry, value, sent=False)
        elif error is None:
            self._confirm(symbol, entry, value, sent=True)
        elif value != entry.wanted:
            entry.state = PENDING  # the wish changed while this call was out: its failure is moot
        else:
            self._failed(symbol, entry, error)

    def _confirm(self, symbol: str, entry: SymbolLeverage, value: Decimal, *, sent: bool) -> None:
        if entry.applied != value:
            entry.applied = value
            self._on_applied(symbol, value)
            self._write(symbol, "LEVERAGE_APPLIED" if sent else "LEVERAGE_NOT_SENT", leverage=str(value))
        if value == entry.wanted:
            entry.attempts, entry.error = 0, ""
            if sent:
                entry.state = APPLIED
        else:
            entry.state, entry.next_at_ms = PENDING, 0  # a newer wish is waiting for its own call

    def _failed(self, symbol: str, entry: SymbolLeverage, error: BaseException) -> None:
        entry.attempts += 1
        entry.error = f"{type(error).__name__}: {error}"
        if entry.attempts >= MAX_ATTEMPTS:
            entry.state = FAILED
            logger.error("leverage %s on %s not set after %d attempts: %s", entry.wanted, symbol, entry.attempts,
                         entry.error)
        else:
            entry.state = RETRYING
            backoff = min(FIRST_RETRY_MS * 2 ** (entry.attempts - 1), MAX_RETRY_MS)
            entry.next_at_ms = self._clock.monotonic_ms() + backoff
            logger.warning("leverage %s on %s not set (attempt %d, next in %d ms): %s", entry.wanted, symbol,
                           entry.attempts, backoff, entry.error)
        self._write(symbol, "LEVERAGE_FAILED", leverage=str(entry.wanted), attempts=entry.attempts,
                    error=entry.error[:300], gaveUp=entry.state == FAILED)

    def _write(self, symbol: str, event: str, **fields: Any) -> None:
        if self._events is not None:
            self._events.write(symbol, event, **fields)

    # -- what the heartbeat shows -----------------------------------------

    def status(self, symbol: str) -> dict[str, Any] | None:
        """Return ``symbol``'s wanted and applied leverage, state, failed attempts and last error (None: untracked)."""
        entry = self._state.get(symbol)
        return entry.to_dict() if entry is not None else None

    def applied(self, symbol: str) -> Decimal | None:
        """Return the leverage the exchange confirmed for ``symbol`` (None: none yet)."""
        entry = self._state.get(symbol)
        return entry.applied if entry is not None else None
