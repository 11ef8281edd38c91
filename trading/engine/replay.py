"""ReplayEngine and BacktestEngine: a data set through the same pipeline, as fast as the CPU allows.

The clock is the data's own (each message's ``ts``), the exchange is the
in-process venue with the simulator's fill rules, and ids come from counters, so
the same input gives the same trades, byte for byte. ``replay_main`` is what
``manage.py run_trader --mode REPLAY`` runs. To rehearse a data set against the
simulator instead (SIM through real sockets), start it with
``manage.py run_simexchange --market FILE --speed X`` and a trader in SIM.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from failover.domain.clock import ManualClock
from trading.domain.config import DEFAULT_CONFIG, TradingConfig
from trading.domain.ids import OrderLinkIdFactory
from trading.engine.core import TradingCore
from trading.engine.eventlog import EventLog
from trading.engine.execution import InlineDispatcher
from trading.engine.leverage import LeverageKeeper
from trading.engine.localstate import ClosedTrade, NoPersistence
from trading.exchange.venue import InProcessVenue
from trading.marketdata.datasets import generated_file, generated_name
from trading.marketdata.generator import generate_messages
from trading.marketdata.instruments import DEFAULT_INSTRUMENTS, InstrumentSpec
from trading.marketdata.jsonl import MarketFileError, TypedLines, read_line_chunks
from trading.marketdata.normalise import Normaliser, SharedLevels

TICK_MS = 100
REPLAY_CHUNK = 50_000  # messages read ahead of the pipeline by run_trader --mode REPLAY
REPLAY_START_MS = 1_763_479_200_000  # where generated data sets start


@dataclass
class BacktestResult:
    messages: int
    events: int
    trades: list[ClosedTrade]
    pnl: Decimal
    fees: Decimal
    win_rate: float
    max_drawdown: Decimal
    exposure: float  # share of market events during which a position was open
    final_equity: Decimal
    entries_sent: int
    entries_refused: dict[str, int]
    crashes: dict[str, int]
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


class BacktestEngine:
    """Run the pipeline over a data set with the in-process venue; return trades and statistics."""

    def __init__(
        self,
        *,
        symbols: list[str],
        config: TradingConfig = DEFAULT_CONFIG,
        event_dir: Path | None = None,
        initial_balance: Decimal = Decimal("10000"),
    ) -> None:
        unknown = [s for s in symbols if s not in DEFAULT_INSTRUMENTS]
        if unknown:
            raise ValueError(f"no instrument filters for {', '.join(unknown)}")
        instruments = {s: DEFAULT_INSTRUMENTS[s] for s in symbols}
        self.symbols = symbols
        self.clock = ManualClock(0)
        # The exchange and the client read the same messages: each book message's levels are parsed once.
        levels = SharedLevels()
        self.venue = InProcessVenue(
            instruments, clock_ms=self.clock.now_ms, initial_balance=initial_balance, parse_levels=levels
        )
        self.persistence = NoPersistence()
        folder = event_dir if event_dir is not None else Path("/dev/null")
        self.events = EventLog(folder, clock_ms=self.clock.now_ms) if event_dir is not None else _NullEventLog()
        self.crash_details: list[dict[str, Any]] = []
        self.core = TradingCore(
            config=config,
            clock=self.clock,
            instruments=instruments,
            exchange=self.venue,
            persistence=self.persistence,
            events=self.events,
            safe_mode=lambda: False,
            on_crash=lambda module, exc, details: self.crash_details.append(details),
            ids=OrderLinkIdFactory(self.clock, instance="replay"),
            log_transitions=event_dir is not None,
            normaliser=Normaliser(parse_levels=levels),
        )
        self.core.ledger.set_equity(initial_balance)
        self._apply_leverage(config, instruments)
        self._last_tick = 0
        self._messages = 0
        self._seconds = 0.0
        self._in_position_events = 0
        self.lines = TypedLines(symbols)

    def _apply_leverage(self, config: TradingConfig, instruments: dict[str, InstrumentSpec]) -> None:
        """Set the config's leverage on the venue, as the trader does on the exchange at start."""
        keeper = LeverageKeeper(symbols=self.symbols, instruments=instruments, exchange=self.venue,
                                dispatcher=InlineDispatcher(), clock=self.clock, on_applied=self.core.risk.set_leverage)
        keeper.want(config.risk.default_leverage)
        keeper.apply_now()
        for message in self.venue.drain():  # the venue pushes each position's new leverage, as Bybit does
            self.core.on_private(message)

    def run(self, messages: Iterable[dict[str, Any]]) -> BacktestResult:
        """Run ``messages`` on from where the last call stopped; the result covers every call so far.

        So a long data set can be fed in chunks, with only the pipeline's time counted.
        """
        started = time.perf_counter()
        core, venue, clock = self.core, self.venue, self.clock
        # Bound once: the loop below runs per message, and each attribute read is a step of it.
        on_private, on_public, tick = core.on_private, core.on_public, core.tick
        venue_on_public, drain, set_clock = venue.on_public, venue.drain, clock.set
        pending = venue.pending  # what drain() would hand out: usually nothing, so it is asked only when not
        counters, state = core.counters, core.state
        last_tick = self._last_tick
        count = 0
        in_position_events = 0
        for message in messages:
            count += 1
            ts = message.get("ts")
            if type(ts) is int:
                set_clock(ts)
                if ts - last_tick >= TICK_MS:
                    tick()
                    last_tick = ts
            venue_on_public(message)
            if pending:
                for private in drain():
                    on_private(private)
            before = counters.market_events
            on_public(message)
            if pending:
                for private in drain():
                    on_private(private)
            if state.positions:
                in_position_events += counters.market_events - before
        self._last_tick = last_tick
        self._messages += count
        self._seconds += time.perf_counter() - started
        self._in_position_events += in_position_events
        return self._result()

    def run_lines(self, lines: Iterable[bytes], *, source: str, first_line: int = 1) -> BacktestResult:
        """Run raw lines of a market file, decoding each inside the timed run: decoding is the pipeline's work.

        Messages of other symbols are skipped; a bad line raises ``MarketFileError`` naming ``source`` and its line.
        """
        return self.run(self.lines.decoded(lines, source=source, first_line=first_line))

    def _result(self) -> BacktestResult:
        """Every run so far: the trades, their statistics and the pipeline's time."""
        trades = list(self.persistence.trades)
        pnl = sum((t.realized_pnl for t in trades), Decimal(0))
        fees = sum((t.fees for t in trades), Decimal(0))
        wins = sum(1 for t in trades if t.realized_pnl > 0)
        peak = running = Decimal(0)
        drawdown = Decimal(0)
        for trade in trades:
            running += trade.realized_pnl
            peak = max(peak, running)
            drawdown = max(drawdown, peak - running)
        events = self.core.counters.market_events
        return BacktestResult(
            messages=self._messages,
            events=events,
            trades=trades,
            pnl=pnl,
            fees=fees,
            win_rate=wins / len(trades) if trades else 0.0,
            max_drawdown=drawdown,
            exposure=self._in_position_events / events if events else 0.0,
            final_equity=self.venue.engine.equity(),
            entries_sent=self.core.counters.entries_sent,
            entries_refused=dict(self.core.counters.entries_refused),
            crashes=dict(self.core.counters.crashes),
            seconds=self._seconds,
        )


class _NullEventLog(EventLog):
    """REPLAY without an event folder: nothing written, nothing slowed."""

    def __init__(self) -> None:  # noqa: D107 (nothing to set up)
        self._failing = {}
        self._lock = threading.Lock()

    def write(self, symbol: str, event: str, **fields: Any) -> dict[str, Any]:
        return {}

    def sync(self) -> None:
        return None

    def close(self) -> None:
        return None


class ReplayEngine:
    """Feed a recorded file or a generated data set through a BacktestEngine."""

    def __init__(
        self, *, symbols: list[str], config: TradingConfig = DEFAULT_CONFIG, event_dir: Path | None = None
    ) -> None:
        self.symbols = symbols
        self.config = config
        self.event_dir = event_dir

    def messages(
        self, *, path: str = "", events: int = 200_000, seed: int = 1, start_ms: int = REPLAY_START_MS
    ) -> Iterator[dict[str, Any]]:
        """Read ``path`` (this engine's symbols only, typed), or generate ``events`` messages from ``seed``."""
        if path:
            return TypedLines(self.symbols).read(path, REPLAY_CHUNK)
        return generate_messages(self.symbols, seed, start_ms, max_messages=events)

    def run(
        self, *, path: str = "", events: int = 200_000, seed: int = 1, start_ms: int = REPLAY_START_MS
    ) -> BacktestResult:
        """Run the data set ``messages`` gives through a fresh BacktestEngine."""
        engine = BacktestEngine(symbols=self.symbols, config=self.config, event_dir=self.event_dir)
        return engine.run(self.messages(path=path, events=events, seed=seed, start_ms=start_ms))


def replay_main(
    *, symbols: list[str], path: str, events: int, seed: int, out: TextIO, data_dir: Path | None = None
) -> int:
    """Run a REPLAY and print its summary; return the exit code.

    Without ``path``, the data set of ``events`` and ``seed`` is generated once into ``data_dir/market/generated``
    and read from there (streamed from the generator when there is no ``data_dir``).
    """
    if not path and data_dir is not None:
        folder = data_dir / "market" / "generated"
        cached = (folder / generated_name(symbols, seed, events, REPLAY_START_MS)).is_file()
        path = str(generated_file(folder, symbols, seed, events, REPLAY_START_MS))
        out.write(f"REPLAY data set {'read from' if cached else 'generated once into'} {path}\n")
    engine = BacktestEngine(symbols=symbols)
    result = engine.run(())
    # In chunks, so memory stays bounded on any file. events/s counts the pipeline's time, decoding included;
    # reading (and decompressing) the file happens between the timed runs.
    try:
        if path:
            for first, lines in read_line_chunks(path, REPLAY_CHUNK):
                result = engine.run_lines(lines, source=path, first_line=first)
        else:
            stream = generate_messages(symbols, seed, REPLAY_START_MS, max_messages=events)
            while chunk := list(itertools.islice(stream, REPLAY_CHUNK)):
                result = engine.run(chunk)
    except MarketFileError as exc:
        out.write(f"REPLAY stopped: the market file is unreadable: {exc}\n")
        return 2
    out.write(
        f"REPLAY {','.join(symbols)}: {result.messages} messages, {result.events} events, "
        f"{len(result.trades)} trades, PnL {result.pnl:.4f} USDT (fees {result.fees:.4f}), "
        f"win rate {result.win_rate:.1%}, max drawdown {result.max_drawdown:.4f}, exposure {result.exposure:.1%}, "
        f"{result.events_per_second:,.0f} events/s\n"
    )
    if result.crashes:
        out.write(f"module crashes: {result.crashes}\n")
        return 1
    return 0
