"""Risk: may this entry go out, and how big? A refusal is a decision with a reason.

Sizing: ``qty = equity * risk_per_trade_pct / 100 / stop_distance``, where the
stop distance is measured between the tick-rounded entry and stop prices, then
capped at the instrument's ``max_qty`` and rounded DOWN to ``qty_step`` (never
risk more than the budget). Prices round in the order's favour: a buy's entry
rounds down and a sell's up; stops round towards the entry (tighter, so the
loss at the stop stays within budget) and take profits towards the entry too.

Reduce-only and closing orders are always allowed: ``check_exit`` never refuses,
whatever safe mode, the daily loss or the trading switch say.

The moment the daily loss limit stops entries is handed to ``on_daily_loss_stop``
(the trader raises DAILY_LOSS_STOP).

Margin: an entry's initial margin is ``notional / leverage``, with the leverage
the exchange applies to the symbol (``set_leverage``; ``risk.default_leverage``
for a symbol no one reports on, as in REPLAY). The quantity is capped so that
this margin, plus a fee allowance, fits in the equity the open positions leave
free; a symbol whose leverage is tracked but not confirmed yet takes no entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from failover.domain.clock import Clock, utc_day
from failover.domain.enums import OrderSide
from trading.domain import reasons
from trading.domain.config import RiskConfig
from trading.domain.orders import OrderRequest
from trading.domain.quality import ExecutionQuality
from trading.marketdata.instruments import InstrumentSpec

_ZERO = Decimal(0)
_HUNDRED = Decimal(100)
# Room for the taker fees of opening and closing (0.055% each at Bybit's base tier), which the exchange
# counts in an order's cost beside its initial margin.
FEE_ALLOWANCE = Decimal("0.002")


def _dec(x: float) -> Decimal:
    # repr gives the shortest string that round-trips, so 0.25 becomes Decimal("0.25"), not its binary tail.
    return Decimal(repr(x))


def round_to_step(value: Decimal, step: Decimal, rounding: str = ROUND_FLOOR) -> Decimal:
    """Round ``value`` to a multiple of ``step`` (down by default), keeping the step's exponent."""
    return ((value / step).to_integral_value(rounding=rounding) * step).quantize(step)


@dataclass(frozen=True, slots=True)
class AccountState:
    equity: Decimal  # wallet balance plus unrealised PnL, in USDT


@dataclass(frozen=True, slots=True)
class PositionExposure:
    symbol: str
    side: OrderSide
    qty: Decimal
    price: Decimal  # mark price when known, else entry price

    @property
    def notional(self) -> Decimal:
        """Return ``|qty| * price``."""
        return abs(self.qty) * self.price


@dataclass(frozen=True, slots=True)
class DailyLossStop:
    """Today's realised PnL reached the daily loss limit: no entries until 00:00 UTC."""

    daily_pnl: Decimal  # negative, USDT
    limit: Decimal  # the loss that stops entries, positive USDT
    limit_pct: Decimal  # daily_loss_limit_pct
    day_start_equity: Decimal


@dataclass(frozen=True, slots=True)
class RiskDecision:
    allowed: bool
    reason: str  # a code from ``trading.domain.reasons``
    symbol: str
    side: OrderSide
    qty: Decimal = _ZERO
    price: Decimal | None = None  # tick-rounded entry price
    stop_price: Decimal | None = None
    take_profit_price: Decimal | None = None
    leverage: Decimal = _ZERO  # the symbol's applied leverage the margin was sized with
    reduce_only: bool = False
    message: str = ""


class RiskEngine:
    """Guard entries with account limits; let every exit through."""

    def __init__(
        self,
        config: RiskConfig,
        clock: Clock,
        instruments: Mapping[str, InstrumentSpec],
        quality: ExecutionQuality | None = None,
        on_daily_loss_stop: Callable[[DailyLossStop], None] | None = None,
    ) -> None:
        self._clock = clock
        self._instruments = instruments
        self._quality = quality
        self._on_daily_loss_stop = on_daily_loss_stop
        self._global_block: str | None = None
        self._positions: dict[str, PositionExposure] = {}
        self._exposure = _ZERO
        self._day = utc_day(clock.now_ms())
        self._daily_pnl = _ZERO
        self._day_start_equity: Decimal | None = None
        self._risk_off = False
        self._config_trading_enabled: bool | None = None
        self._applied_leverage: dict[str, Decimal | None] = {}
        self.trading_enabled = config.trading_enabled
        self.apply_config(config)

    def apply_config(self, config: RiskConfig) -> None:
        """Take new limits; a changed ``trading_enabled`` in the file is applied, an unchanged one
        does not undo a runtime DISABLE_TRADING."""
        if config.trading_enabled != self._config_trading_enabled:
            self.trading_enabled = config.trading_enabled
            self._config_trading_enabled = config.trading_enabled
        self._risk_pct = _dec(config.risk_per_trade_pct)
        self._max_open = config.max_open_positions
        self._max_heat_pct = _dec(config.max_heat_pct)
        self._daily_loss_pct = _dec(config.daily_loss_limit_pct)
        self._leverage = config.default_leverage
        self._tp_multiple = _dec(config.take_profit_multiple)
        self._evaluate_daily_loss()

    # -- switches ---------------------------------------------------------------

    def set_global_block(self, reason: str | None) -> None:
        """Block (reason, e.g. SAFE_MODE_ACTIVE) or unblock (None) every new entry."""
        self._global_block = reason

    def set_trading_enabled(self, enabled: bool) -> None:
        """Switch new entries on or off at runtime (recovery step DISABLE_TRADING)."""
        self.trading_enabled = enabled

    def set_leverage(self, symbol: str, leverage: Decimal | None) -> None:
        """Note the leverage the exchange applies to ``symbol``; None: not confirmed yet, entries on it wait."""
        self._applied_leverage[symbol] = leverage

    def leverage_for(self, symbol: str) -> Decimal:
        """Return the leverage an entry on ``symbol`` is margined with (the configured one when none is reported)."""
        applied = self._applied_leverage.get(symbol)
        return applied if applied is not None else Decimal(self._leverage)

    @property
    def risk_off(self) -> bool:
        """Tell whether the daily loss limit holds entries off for the rest of the UTC day."""
        self._roll_day()
        return self._risk_off

    # -- account feed -----------------------------------------------------------

    def on_positions(self, positions: Iterable[PositionExposure]) -> None:
        """Replace the set of open positions (after fills, resyncs, closes)."""
        self._positions = {p.symbol: p for p in positions if p.qty != 0}
        self._exposure = sum((p.notional for p in self._positions.values()), _ZERO)

    def on_trade_closed(self, pnl: Decimal) -> bool:
        """Add a closed trade's realised PnL to today's; return True if it just tripped RISK_OFF."""
        self._roll_day()
        self._daily_pnl += Decimal(pnl)
        was_off = self._risk_off
        self._evaluate_daily_loss()
        return self._risk_off and not was_off

    def on_equity(self, equity: Decimal) -> None:
        """Note the account equity; the first value of a UTC day anchors the daily loss limit."""
        self._roll_day()
        if self._day_start_equity is None and equity > 0:
            self._day_start_equity = Decimal(equity) - self._daily_pnl
            self._evaluate_daily_loss()

    @property
    def daily_pnl(self) -> Decimal:
        """Return today's realised PnL (UTC day)."""
        self._roll_day()
        return self._daily_pnl

    @property
    def open_positions(self) -> int:
        """Return the number of open positions."""
        return len(self._positions)

    @property
    def exposure(self) -> Decimal:
        """Return the total notional of open positions."""
        return self._exposure

    def heat_pct(self, equity: Decimal) -> Decimal:
        """Return total exposure / equity in percent."""
        return self._exposure / equity * _HUNDRED if equity > 0 else _ZERO

    # -- decisions --------------------------------------------------------------

    def entry_block_reason(self, symbol: str) -> str | None:
        """Return why ``symbol`` may not open a position right now, or None (the state machine's gate)."""
        if self._global_block is not None:
            return self._global_block
        if not self.trading_enabled:
            return reasons.TRADING_DISABLED
        if self.risk_off:
            return reasons.RISK_OFF_DAILY_LOSS
        if symbol in self._applied_leverage and self._applied_leverage[symbol] is None:
            return reasons.LEVERAGE_NOT_APPLIED
        if self._quality is not None and self._quality.block_new_entries(symbol):
            return reasons.SYMBOL_BLOCKED_EXECUTION_QUALITY
        return None

    def check_entry(self, request: OrderRequest, account: AccountState) -> RiskDecision:
        """Decide whether ``request`` may open a position, and size it."""
        symbol = request.symbol
        self.on_equity(account.equity)
        blocked = self.entry_block_reason(symbol)
        if blocked is not None:
            return self._refuse(request, blocked, "new entries are blocked")
        spec = self._instruments.get(symbol)
        if spec is None:
            return self._refuse(request, reasons.UNKNOWN_INSTRUMENT, f"no instrument filters for {symbol}")
        refused = self._check_limits(request, account.equity)
        if refused is not None:
            return refused
        return self._sized_entry(request, spec, account.equity)

    def check_exit(self, symbol: str, side: OrderSide, qty: Decimal) -> RiskDecision:
        """Allow a reduce-only or closing order, always."""
        return RiskDecision(
            allowed=True,
            reason=reasons.REDUCE_ONLY_ALLOWED,
            symbol=symbol,
            side=side,
            qty=qty,
            reduce_only=True,
            message="closing and reduce-only orders are never blocked",
        )

    # -- internals --------------------------------------------------------------

    def _refuse(self, request: OrderRequest, reason: str, message: str) -> RiskDecision:
        return RiskDecision(allowed=False, reason=reason, symbol=request.symbol, side=request.side, message=message)

    def _check_limits(self, request: OrderRequest, equity: Decimal) -> RiskDecision | None:
        """Refuse on the position limits, the equity or the request's own numbers; None when all pass."""
        symbol = request.symbol
        if symbol in self._positions:
            return self._refuse(request, reasons.POSITION_ALREADY_OPEN, f"{symbol} already holds a position")
        if len(self._positions) >= self._max_open:
            return self._refuse(request, reasons.MAX_OPEN_POSITIONS, f"{len(self._positions)} of {self._max_open} open")
        if not equity > 0:
            return self._refuse(request, reasons.INVALID_EQUITY, f"equity {equity}")
        if not (request.reference_price > 0.0 and request.reference_price < float("inf")):
            return self._refuse(request, reasons.INVALID_PRICE, f"reference price {request.reference_price}")
        if not (request.stop_distance > 0.0 and request.stop_distance < float("inf")):
            return self._refuse(request, reasons.INVALID_STOP_DISTANCE, f"stop distance {request.stop_distance}")
        return None

    def _sized_entry(self, request: OrderRequest, spec: InstrumentSpec, equity: Decimal) -> RiskDecision:
        """Round entry, stop and take profit to the tick, size to the risk budget, then check minimums and heat."""
        tick = spec.tick_size
        buy = request.side is OrderSide.BUY
        price = round_to_step(_dec(request.reference_price), tick, ROUND_FLOOR if buy else ROUND_CEILING)
        distance = _dec(request.stop_distance)
        if buy:
            stop = round_to_step(price - distance, tick, ROUND_CEILING)
        else:
            stop = round_to_step(price + distance, tick, ROUND_FLOOR)
        real_distance = abs(price - stop)
        if price <= 0 or stop <= 0 or real_distance == 0:
            return self._refuse(request, reasons.INVALID_STOP_DISTANCE, f"stop {stop} for entry {price} (tick {tick})")
        tp_distance = real_distance * self._tp_multiple
        if buy:
            take_profit = round_to_step(price + tp_distance, tick, ROUND_FLOOR)
        else:
            take_profit = round_to_step(price - tp_distance, tick, ROUND_CEILING)
            if take_profit <= 0:
                take_profit = tick

        risk_amount = equity * self._risk_pct / _HUNDRED
        leverage = self.leverage_for(request.symbol)
        margin_qty = self._margin_qty(equity, price, leverage)
        raw_qty = min(risk_amount / real_distance, spec.max_qty, margin_qty)
        qty = round_to_step(raw_qty, spec.qty_step)
        if qty < spec.min_qty:
            if raw_qty == margin_qty:
                return self._refuse(request, reasons.INSUFFICIENT_MARGIN,
                                    f"free margin buys {margin_qty:.8f} at {leverage}x < min_qty {spec.min_qty}")
            return self._refuse(request, reasons.QTY_BELOW_MINIMUM, f"sized {raw_qty:.8f} < min_qty {spec.min_qty}")
        notional = qty * price
        if notional < spec.min_notional:
            return self._refuse(
                request, reasons.NOTIONAL_BELOW_MINIMUM, f"notional {notional} < min_notional {spec.min_notional}"
            )
        heat = (self._exposure + notional) / equity * _HUNDRED
        if heat > self._max_heat_pct:
            return self._refuse(request, reasons.MAX_HEAT, f"heat would be {heat:.2f}% > {self._max_heat_pct}%")
        return RiskDecision(
            allowed=True,
            reason=reasons.ALLOWED,
            symbol=request.symbol,
            side=request.side,
            qty=qty,
            price=price,
            stop_price=stop,
            take_profit_price=take_profit,
            leverage=leverage,
            message=f"risk {risk_amount:.4f} over stop distance {real_distance}",
        )

    def _margin_qty(self, equity: Decimal, price: Decimal, leverage: Decimal) -> Decimal:
        """Return the most an entry at ``price`` may buy with the equity the open positions' margin leaves free."""
        used = sum((p.notional / self.leverage_for(p.symbol) for p in self._positions.values()), _ZERO)
        free = equity - used
        if free <= 0:
            return _ZERO
        return free / (price * (1 / leverage + FEE_ALLOWANCE))

    def _roll_day(self) -> None:
        day = utc_day(self._clock.now_ms())
        if day != self._day:
            # A new UTC day: the daily loss limit starts over.
            self._day = day
            self._daily_pnl = _ZERO
            self._day_start_equity = None
            self._risk_off = False

    def _evaluate_daily_loss(self) -> None:
        if self._risk_off or self._day_start_equity is None:
            return
        limit = self._day_start_equity * self._daily_loss_pct / _HUNDRED
        if self._daily_pnl <= -limit:
            self._risk_off = True
            if self._on_daily_loss_stop is not None:
                self._on_daily_loss_stop(
                    DailyLossStop(self._daily_pnl, limit, self._daily_loss_pct, self._day_start_equity)
                )
