"""Per-symbol entry state machine: the only producer of ``OrderRequest``.

::

    IDLE --score>=watch--> WATCH --score>=entry--> ARM --score>=entry, gate open--> ORDER_REQUEST
     ^                       |  (fades/flips/timeout)  |  (fades/flips/timeout)        |  filled
     +-----------------------+-------------------------+                               v
     +<--cooldown_ms-- COOLDOWN <--position closed-- IN_POSITION <---------------------+
                          ^--rejected / order_request_timeout_ms-- ORDER_REQUEST

One step per update: a signal needs three consecutive updates (WATCH, ARM,
fire) before it becomes an order request, which filters one-tick spikes.

The gate is asked only at the moment of firing. When it answers with a reason
(SAFE_MODE_ACTIVE, RISK_OFF, a blocked symbol) the machine stays in ARM, keeps
following the signal, emits no request, and counts and reports the refusal once
per ARM episode. A fill moves a symbol to IN_POSITION from any state, because the
exchange is the truth: a fill that arrives after a timeout still counts.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from enum import StrEnum

from failover.domain.enums import OrderSide
from trading.domain.config import TradingConfig
from trading.domain.features import BPS, Features
from trading.domain.orders import OrderRequest
from trading.domain.scoring import Score

EntryGate = Callable[[str], str | None]  # symbol -> reason entries are blocked, or None


class State(StrEnum):
    IDLE = "IDLE"
    WATCH = "WATCH"
    ARM = "ARM"
    ORDER_REQUEST = "ORDER_REQUEST"
    IN_POSITION = "IN_POSITION"
    COOLDOWN = "COOLDOWN"


# The members as module names: on Python 3.11 reading ``State.X`` costs several times a global's read,
# and every event asks the machine for its state.
_IDLE, _WATCH, _ARM, _ORDER_REQUEST, _IN_POSITION, _COOLDOWN = (
    State.IDLE, State.WATCH, State.ARM, State.ORDER_REQUEST, State.IN_POSITION, State.COOLDOWN
)
_BUY, _SELL = OrderSide.BUY, OrderSide.SELL

# Transition reasons, logged with every transition.
SIGNAL_WATCH = "SIGNAL_WATCH"
SIGNAL_ARM = "SIGNAL_ARM"
SIGNAL_FADED = "SIGNAL_FADED"
SIGNAL_WEAKENED = "SIGNAL_WEAKENED"
SIGNAL_FLIPPED = "SIGNAL_FLIPPED"
WATCH_TIMEOUT = "WATCH_TIMEOUT"
ARM_TIMEOUT = "ARM_TIMEOUT"
ORDER_REQUEST_TIMEOUT = "ORDER_REQUEST_TIMEOUT"
ENTRY_SIGNAL_LONG = "ENTRY_SIGNAL_LONG"
ENTRY_SIGNAL_SHORT = "ENTRY_SIGNAL_SHORT"
ENTRY_FILLED = "ENTRY_FILLED"
ORDER_REJECTED = "ORDER_REJECTED"
POSITION_CLOSED = "POSITION_CLOSED"
COOLDOWN_OVER = "COOLDOWN_OVER"
LOCAL_STATE_CLEARED = "LOCAL_STATE_CLEARED"


@dataclass(frozen=True, slots=True)
class Transition:
    symbol: str
    from_state: State
    to_state: State
    reason: str
    ts: int


class SymbolStateContext:
    """What the machine knows about one symbol."""

    __slots__ = (
        "symbol",
        "state",
        "side",
        "since_ms",
        "last_reason",
        "suppressed",
        "last_suppressed_reason",
        "suppressed_this_arm",
    )

    def __init__(self, symbol: str, now_ms: int = 0) -> None:
        self.symbol = symbol
        self.state = State.IDLE
        self.side: OrderSide | None = None  # the signal side in WATCH/ARM, the position side in IN_POSITION
        self.since_ms = now_ms  # when the current state was entered
        self.last_reason = ""
        self.suppressed = 0  # entries the gate suppressed
        self.last_suppressed_reason: str | None = None
        self.suppressed_this_arm = False


class StateMachine:
    """Drive every symbol's ``SymbolStateContext`` from scores, timeouts and execution callbacks."""

    def __init__(
        self,
        config: TradingConfig,
        gate: EntryGate,
        on_transition: Callable[[Transition], None] | None = None,
        on_suppressed: Callable[[str, str], None] | None = None,
    ) -> None:
        self._gate = gate
        self._on_transition = on_transition
        self._on_suppressed = on_suppressed  # (symbol, reason), once per ARM episode: the refusal's audit trail
        self._contexts: dict[str, SymbolStateContext] = {}
        self.suppressed_total = 0
        self.suppressed_by_reason: dict[str, int] = {}
        self.apply_config(config)

    def apply_config(self, config: TradingConfig) -> None:
        """Take new thresholds and timeouts; states are kept."""
        sm = config.state_machine
        self._watch_timeout = sm.watch_timeout_ms
        self._arm_timeout = sm.arm_timeout_ms
        self._order_timeout = sm.order_request_timeout_ms
        self._cooldown = sm.cooldown_ms
        self._watch = config.scoring.watch_threshold
        self._entry = config.scoring.entry_threshold
        self._stop_mult = config.risk.stop_vol_multiple
        self._min_stop_bps = config.risk.min_stop_bps

    def context(self, symbol: str) -> SymbolStateContext:
        """Return the context of ``symbol``, creating an IDLE one if needed."""
        ctx = self._contexts.get(symbol)
        if ctx is None:
            ctx = self._contexts[symbol] = SymbolStateContext(symbol)
        return ctx

    def state(self, symbol: str) -> State:
        """Return the state of ``symbol`` (IDLE if never seen)."""
        ctx = self._contexts.get(symbol)
        return ctx.state if ctx is not None else State.IDLE

    def contexts(self) -> dict[str, SymbolStateContext]:
        """Return every known context by symbol (the live objects)."""
        return self._contexts

    def on_signal(self, symbol: str, score: Score, features: Features, now_ms: int) -> OrderRequest | None:
        """Advance ``symbol`` one step on a new score; return an ``OrderRequest`` when it fires."""
        ctx = self._contexts.get(symbol)
        if ctx is None:
            ctx = self.context(symbol)
        state = ctx.state
        if state is not _IDLE:  # IDLE never times out: most events skip the call
            self._expire(ctx, now_ms)
            state = ctx.state
        if state is _IDLE or state is _WATCH or state is _ARM:
            if not features.ready:
                return None
        else:
            return None
        if score.long >= score.short:
            side, value = _BUY, score.long
        else:
            side, value = _SELL, score.short

        if state is _IDLE:
            if value >= self._watch:
                ctx.side = side
                self._move(ctx, _WATCH, SIGNAL_WATCH, now_ms)
            return None
        if side is not ctx.side and value > 0.0:
            self._move(ctx, _IDLE, SIGNAL_FLIPPED, now_ms)
            return None
        if value < self._watch:
            self._move(ctx, _IDLE, SIGNAL_FADED, now_ms)
            return None
        if state is _WATCH:
            if value >= self._entry:
                ctx.suppressed_this_arm = False
                self._move(ctx, _ARM, SIGNAL_ARM, now_ms)
            return None
        return self._step_armed(ctx, side, value, features, now_ms)

    def tick(self, now_ms: int) -> None:
        """Apply timeouts to every symbol (call it when no market data arrives)."""
        for ctx in self._contexts.values():
            self._expire(ctx, now_ms)

    def on_position_opened(self, symbol: str, side: OrderSide, now_ms: int, reason: str = ENTRY_FILLED) -> None:
        """Record a fill or a recovered exchange position: the symbol is IN_POSITION."""
        ctx = self.context(symbol)
        ctx.side = side
        if ctx.state is not State.IN_POSITION:
            self._move(ctx, State.IN_POSITION, reason, now_ms)

    def on_order_rejected(self, symbol: str, now_ms: int, reason: str = ORDER_REJECTED) -> None:
        """Record that the entry was refused or cancelled: cool down instead of retrying at once."""
        ctx = self.context(symbol)
        if ctx.state is State.ORDER_REQUEST:
            self._move(ctx, State.COOLDOWN, reason, now_ms)

    def on_position_closed(self, symbol: str, now_ms: int, reason: str = POSITION_CLOSED) -> None:
        """Record that the symbol's position is gone: cool down."""
        ctx = self.context(symbol)
        if ctx.state is State.IN_POSITION:
            ctx.side = None
            self._move(ctx, State.COOLDOWN, reason, now_ms)

    def reset_symbol(self, symbol: str, now_ms: int = 0) -> bool:
        """Put ``symbol`` back to IDLE unless it holds or awaits a position; return whether it did."""
        ctx = self._contexts.get(symbol)
        if ctx is None:
            return False
        if ctx.state is State.IN_POSITION or ctx.state is State.ORDER_REQUEST:
            return False
        ctx.side = None
        ctx.suppressed_this_arm = False
        if ctx.state is not State.IDLE:
            self._move(ctx, State.IDLE, LOCAL_STATE_CLEARED, now_ms)
        return True

    def clear_idle_state(self, now_ms: int = 0, keep: Collection[str] = ()) -> list[str]:
        """Reset WATCH/ARM/COOLDOWN of symbols with no position (recovery CLEAR_LOCAL_STATE).

        ``keep`` names symbols the exchange says hold a position; they are left
        alone whatever their local state. Returns the symbols that were reset.
        """
        cleared = []
        for symbol, ctx in self._contexts.items():
            if symbol in keep or ctx.state is State.IDLE:
                continue
            if self.reset_symbol(symbol, now_ms):
                cleared.append(symbol)
        return cleared

    def _step_armed(
        self, ctx: SymbolStateContext, side: OrderSide, value: float, features: Features, now_ms: int
    ) -> OrderRequest | None:
        """Fire from ARM while the score holds at entry strength and the gate is open."""
        if value < self._entry:
            self._move(ctx, _WATCH, SIGNAL_WEAKENED, now_ms)
            return None
        symbol = ctx.symbol
        blocked = self._gate(symbol)
        if blocked is not None:
            self._suppress(ctx, blocked)
            return None
        request = OrderRequest(
            symbol=symbol,
            side=side,
            reference_price=features.price,
            stop_distance=self._stop_distance(features),
            reason=ENTRY_SIGNAL_LONG if side is _BUY else ENTRY_SIGNAL_SHORT,
            score=value,
            ts=now_ms,
        )
        self._move(ctx, _ORDER_REQUEST, request.reason, now_ms)
        return request

    def _stop_distance(self, features: Features) -> float:
        price = features.price
        by_vol = self._stop_mult * features.vol_bps / BPS * price
        floor = self._min_stop_bps / BPS * price
        return by_vol if by_vol > floor else floor

    def _expire(self, ctx: SymbolStateContext, now_ms: int) -> None:
        state = ctx.state
        age = now_ms - ctx.since_ms
        if state is _IDLE or state is _IN_POSITION:
            return
        if state is _WATCH and age >= self._watch_timeout:
            ctx.side = None
            self._move(ctx, _IDLE, WATCH_TIMEOUT, now_ms)
        elif state is _ARM and age >= self._arm_timeout:
            ctx.side = None
            self._move(ctx, _IDLE, ARM_TIMEOUT, now_ms)
        elif state is _ORDER_REQUEST and age >= self._order_timeout:
            self._move(ctx, _COOLDOWN, ORDER_REQUEST_TIMEOUT, now_ms)
        elif state is _COOLDOWN and age >= self._cooldown:
            ctx.side = None
            self._move(ctx, _IDLE, COOLDOWN_OVER, now_ms)

    def _suppress(self, ctx: SymbolStateContext, reason: str) -> None:
        ctx.last_suppressed_reason = reason
        if ctx.suppressed_this_arm:
            return
        # Once per ARM episode: a blocked signal held for 500 events is one suppressed entry.
        ctx.suppressed_this_arm = True
        ctx.suppressed += 1
        self.suppressed_total += 1
        self.suppressed_by_reason[reason] = self.suppressed_by_reason.get(reason, 0) + 1
        if self._on_suppressed is not None:
            self._on_suppressed(ctx.symbol, reason)

    def _move(self, ctx: SymbolStateContext, to: State, reason: str, now_ms: int) -> None:
        previous = ctx.state
        ctx.state = to
        ctx.since_ms = now_ms
        ctx.last_reason = reason
        if to is not _ARM:
            ctx.suppressed_this_arm = False
        if self._on_transition is not None:
            self._on_transition(Transition(ctx.symbol, previous, to, reason, now_ms))
