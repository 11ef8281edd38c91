"""What every step handler works with: its context, its failure, the trader's commands and the event log.

A handler gets a ``StepContext`` and returns a dict (what local state said,
what the exchange said, the difference, what was done), or raises
``StepFailed`` with a message and the evidence gathered so far. The handlers
live in ``handlers.py`` and ``resync.py``; both import this module, never each
other's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from failover.domain.types import ProcessState
from failover.recovery import records
from trading import control
from trading.domain.config import TradingConfig
from trading.engine.eventlog import EventLog
from trading.exchange.port import ExchangePort

logger = logging.getLogger(__name__)

COMMAND_WAIT_S = 10.0


class StepFailed(Exception):
    """The step could not reach its goal; ``details`` is the evidence gathered before it stopped."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


@dataclass
class StepContext:
    """Everything a handler may use: the environment, the step's scope, the exchange, a heartbeat."""

    run_id: str
    step_type: str
    details: dict[str, Any]
    context: dict[str, Any]
    folder: Path
    config: TradingConfig
    beat: Callable[[], None] = lambda: None
    previous_state: ProcessState | None = None  # what READ_PROCESS_STATE found earlier in this plan
    restart_cutoff: datetime | None = None  # intents older than this belong to a process that is gone
    rest_factory: Callable[[], ExchangePort] | None = None
    _rest: ExchangePort | None = field(default=None, repr=False)

    def rest(self) -> ExchangePort:
        """Return the exchange port of the environment (built once per step)."""
        if self._rest is None:
            if self.rest_factory is not None:
                self._rest = self.rest_factory()
            else:
                exchange = self.context.get("exchange")
                if not exchange:
                    raise StepFailed("the environment registered no exchange: start its trader first")
                self._rest = shared_rest(exchange)
        return self._rest

    def events(self) -> EventLog:
        """Open the environment's event log (``<dataDir>/events``); the caller closes it."""
        return EventLog(self.folder / "events", clock_ms=records.CLOCK.now_ms, run_id=self.run_id)


_REST_BY_TARGET: dict[Any, ExchangePort] = {}
_REST_LOCK = threading.Lock()


def shared_rest(exchange: dict[str, Any]) -> ExchangePort:
    """One REST client a worker process and exchange: steps of a plan reuse its session and connections."""
    # Imported here: it loads pybit, which only a step that talks to the exchange needs.
    from trading.exchange.connect import ExchangeTarget, rest_for

    target = ExchangeTarget.from_context(exchange)
    with _REST_LOCK:
        rest = _REST_BY_TARGET.get(target)
        if rest is None:
            rest = _REST_BY_TARGET[target] = rest_for(target, timeout_s=5.0)
        return rest


def write_event(log: EventLog, symbol: str, event: str, **fields: Any) -> None:
    """Append one event; a symbol the log refuses as a file name goes to the system file, named in ``forSymbol``."""
    try:
        log.write(symbol, event, **fields)
    except ValueError:
        log.write("_SYSTEM", event, forSymbol=symbol, **fields)


def trader_heartbeat(run_id: str) -> dict[str, Any] | None:
    """Return the environment's trader heartbeat, None when no trader runs (or no Redis is configured)."""
    try:
        return control.read_heartbeat(run_id=run_id)
    except Exception as exc:  # no Redis configured: no trader can be listening either
        logger.info("no trader heartbeat for %r: %s", run_id, exc)
        return None


def trader_command(run_id: str, command: str, args: dict[str, Any] | None = None, *,
                   required: bool = False) -> dict[str, Any]:
    """Send a command to the environment's trader; return evidence of what happened.

    With ``required`` a trader that is running but does not acknowledge, or
    acknowledges an error, fails the step; without it, that is only recorded.
    """
    if trader_heartbeat(run_id) is None:
        return {"command": command, "sent": False, "note": "no trader running"}
    try:
        ack = control.send_command(command, run_id=run_id, args=args, wait_s=COMMAND_WAIT_S)
    except control.TraderUnavailable as exc:
        if required:
            raise StepFailed(f"trader did not carry out {command}: {exc}") from exc
        return {"command": command, "sent": True, "acknowledged": False, "error": str(exc)}
    if required and not ack.get("ok"):
        raise StepFailed(f"trader refused {command}: {ack.get('error')}", {"ack": ack})
    return {"command": command, "sent": True, "acknowledged": True, "ack": ack}
