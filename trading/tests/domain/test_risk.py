from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

import pytest

from failover.domain.clock import MS_PER_DAY, ManualClock
from failover.domain.enums import OrderSide
from trading.domain import reasons
from trading.domain.orders import OrderRequest
from trading.domain.quality import ExecutionQuality
from trading.domain.risk import AccountState, PositionExposure, RiskEngine, round_to_step
from trading.marketdata.instruments import DEFAULT_INSTRUMENTS, InstrumentSpec
from trading.tests.domain.kit import T0, make_config

CONFIG = make_config(
    risk={
        "risk_per_trade_pct": 0.25,
        "max_open_positions": 2,
        "max_heat_pct": 300,
        "daily_loss_limit_pct": 2,
        "default_leverage": 5,
        "take_profit_multiple": 2,
    },
    quality={"slippage_window": 5, "max_slippage_bps": 20, "quality_threshold": 50, "recovery_threshold": 70},
)
EQUITY = AccountState(equity=Decimal("10000"))
TINY = InstrumentSpec(
    symbol="TINYUSDT",
    base_coin="TINY",
    tick_size=Decimal("0.01"),
    qty_step=Decimal("0.1"),
    min_qty=Decimal("0.1"),
    max_qty=Decimal("2.5"),
    min_notional=Decimal("5"),
    max_leverage=Decimal("10"),
    start_price=Decimal("10"),
)
INSTRUMENTS = {**DEFAULT_INSTRUMENTS, TINY.symbol: TINY}


def engine(clock: ManualClock | None = None, quality: ExecutionQuality | None = None) -> RiskEngine:
    return RiskEngine(CONFIG.risk, clock or ManualClock(T0), INSTRUMENTS, quality)


def request(
    symbol: str = "BTCUSDT", side: OrderSide = OrderSide.BUY, price: float = 50000.05, stop: float = 100.0
) -> OrderRequest:
    return OrderRequest(
        symbol=symbol, side=side, reference_price=price, stop_distance=stop, reason="TEST", score=0.7, ts=T0
    )


def position(symbol: str, qty: str, price: str) -> PositionExposure:
    return PositionExposure(symbol=symbol, side=OrderSide.BUY, qty=Decimal(qty), price=Decimal(price))


def test_risk_sizes_long_entry_from_risk_and_stop() -> None:
    decision = engine().check_entry(request(), EQUITY)

    assert decision.allowed is True
    assert decision.reason == reasons.ALLOWED
    assert str(decision.price) == "50000.00"  # a buy rounds down to the 0.10 tick
    assert str(decision.stop_price) == "49900.00"
    assert str(decision.take_profit_price) == "50200.00"
    assert str(decision.qty) == "0.250"  # 25 USDT risk / 100 stop, in 0.001 steps
    assert decision.leverage == 5


def test_risk_sizes_short_entry_with_prices_rounded_for_a_sell() -> None:
    decision = engine().check_entry(request(side=OrderSide.SELL), EQUITY)

    assert decision.allowed is True
    assert str(decision.price) == "50000.10"  # a sell rounds up
    assert str(decision.stop_price) == "50100.10"
    assert str(decision.take_profit_price) == "49800.10"
    assert str(decision.qty) == "0.250"


def test_risk_rounds_qty_down_to_step() -> None:
    decision = engine().check_entry(request(stop=70.0), EQUITY)

    assert str(decision.qty) == "0.357"  # 25 / 70 = 0.35714...


def test_risk_sizes_on_the_tick_rounded_stop_distance() -> None:
    # 10.00 - 0.015 = 9.985 rounds towards the entry to 9.99: a 0.01 stop.
    decision = engine().check_entry(request(symbol="TINYUSDT", price=10.0, stop=0.015), AccountState(Decimal("10")))

    assert decision.allowed is True
    assert str(decision.stop_price) == "9.99"
    assert str(decision.take_profit_price) == "10.02"
    assert str(decision.qty) == "2.5"  # 0.025 USDT / 0.01, not 0.025 / 0.015 = 1.6


def test_risk_caps_qty_at_instrument_max() -> None:
    decision = engine().check_entry(request(symbol="TINYUSDT", price=10.0, stop=0.1), EQUITY)

    assert decision.allowed is True
    assert str(decision.qty) == "2.5"  # 250 wanted, capped at max_qty


def test_risk_refuses_stop_inside_one_tick() -> None:
    decision = engine().check_entry(request(price=50000.0, stop=0.05), EQUITY)

    assert (decision.allowed, decision.reason) == (False, reasons.INVALID_STOP_DISTANCE)


@pytest.mark.parametrize("stop", [0.0, -5.0, float("nan"), float("inf")])
def test_risk_refuses_invalid_stop_distance(stop: float) -> None:
    decision = engine().check_entry(request(stop=stop), EQUITY)

    assert (decision.allowed, decision.reason) == (False, reasons.INVALID_STOP_DISTANCE)


def test_risk_refuses_stop_below_zero_price() -> None:
    decision = engine().check_entry(request(price=50.0, stop=60.0), EQUITY)

    assert decision.reason == reasons.INVALID_STOP_DISTANCE


def test_risk_refuses_qty_below_minimum() -> None:
    decision = engine().check_entry(request(stop=1000.0), AccountState(Decimal("100")))

    assert (decision.allowed, decision.reason) == (False, reasons.QTY_BELOW_MINIMUM)
    assert decision.qty == 0


def test_risk_refuses_notional_below_minimum() -> None:
    # XRP: 0.25 USDT / 0.1 stop = 2.5 -> 2 XRP at 2.0 = 4 USDT < 5 USDT minimum.
    decision = engine().check_entry(request(symbol="XRPUSDT", price=2.0, stop=0.1), AccountState(Decimal("100")))

    assert (decision.allowed, decision.reason) == (False, reasons.NOTIONAL_BELOW_MINIMUM)


def test_risk_refuses_entry_over_max_heat() -> None:
    risk = engine()
    assert risk.check_entry(request(), EQUITY).allowed is True  # 12,500 notional = 125%

    risk.on_positions([position("ETHUSDT", "10", "2500")])  # +25,000 -> 375%

    decision = risk.check_entry(request(), EQUITY)
    assert (decision.allowed, decision.reason) == (False, reasons.MAX_HEAT)
    assert risk.heat_pct(EQUITY.equity) == Decimal("250")


def test_risk_refuses_entry_over_max_open_positions() -> None:
    risk = engine()
    risk.on_positions([position("ETHUSDT", "0.01", "3000"), position("SOLUSDT", "0.1", "140")])

    decision = risk.check_entry(request(), EQUITY)

    assert (decision.allowed, decision.reason) == (False, reasons.MAX_OPEN_POSITIONS)


def test_risk_refuses_second_position_in_same_symbol() -> None:
    risk = engine()
    risk.on_positions([position("BTCUSDT", "0.01", "50000")])

    assert risk.check_entry(request(), EQUITY).reason == reasons.POSITION_ALREADY_OPEN


def test_risk_ignores_flat_positions() -> None:
    risk = engine()
    risk.on_positions([position("ETHUSDT", "0", "3000"), position("SOLUSDT", "0", "140")])

    assert risk.open_positions == 0
    assert risk.check_entry(request(), EQUITY).allowed is True


def test_risk_refuses_unknown_instrument_and_bad_equity() -> None:
    risk = engine()

    assert risk.check_entry(request(symbol="NOPEUSDT"), EQUITY).reason == reasons.UNKNOWN_INSTRUMENT
    assert risk.check_entry(request(), AccountState(Decimal("0"))).reason == reasons.INVALID_EQUITY


def test_risk_refuses_entry_in_safe_mode_but_allows_exit() -> None:
    risk = engine()
    risk.set_global_block(reasons.SAFE_MODE_ACTIVE)

    decision = risk.check_entry(request(), EQUITY)
    exit_decision = risk.check_exit("BTCUSDT", OrderSide.SELL, Decimal("0.25"))

    assert (decision.allowed, decision.reason) == (False, reasons.SAFE_MODE_ACTIVE)
    assert (exit_decision.allowed, exit_decision.reason, exit_decision.reduce_only) == (
        True,
        reasons.REDUCE_ONLY_ALLOWED,
        True,
    )
    assert exit_decision.qty == Decimal("0.25")

    risk.set_global_block(None)
    assert risk.check_entry(request(), EQUITY).allowed is True


def test_risk_refuses_entry_when_trading_disabled_but_allows_exit() -> None:
    risk = engine()
    risk.set_trading_enabled(False)

    assert risk.check_entry(request(), EQUITY).reason == reasons.TRADING_DISABLED
    assert risk.check_exit("BTCUSDT", OrderSide.SELL, Decimal("1")).allowed is True


def test_risk_reload_with_unchanged_switch_keeps_runtime_disable() -> None:
    risk = engine()
    risk.set_trading_enabled(False)

    risk.apply_config(make_config(risk={"max_open_positions": 3}).risk)
    assert risk.trading_enabled is False

    risk.apply_config(make_config(risk={"trading_enabled": False}).risk)
    risk.apply_config(make_config(risk={"trading_enabled": True}).risk)
    assert risk.trading_enabled is True


def test_risk_daily_loss_switches_risk_off_for_the_rest_of_the_utc_day() -> None:
    clock = ManualClock(T0)  # 15:21 UTC
    risk = engine(clock)
    risk.on_equity(Decimal("10000"))  # limit: 2% = 200 USDT

    assert risk.on_trade_closed(Decimal("-150")) is False
    assert risk.check_entry(request(), EQUITY).allowed is True
    assert risk.on_trade_closed(Decimal("-50")) is True
    assert risk.on_trade_closed(Decimal("500")) is False  # a later win does not lift it

    decision = risk.check_entry(request(), EQUITY)
    assert (decision.allowed, decision.reason) == (False, reasons.RISK_OFF_DAILY_LOSS)
    assert risk.check_exit("BTCUSDT", OrderSide.SELL, Decimal("0.25")).allowed is True
    assert risk.entry_block_reason("ETHUSDT") == reasons.RISK_OFF_DAILY_LOSS

    clock.set((T0 // MS_PER_DAY + 1) * MS_PER_DAY - 1)  # 23:59:59.999 the same day
    assert risk.risk_off is True

    clock.advance(1)  # 00:00 UTC next day
    assert risk.risk_off is False
    assert risk.daily_pnl == 0
    assert risk.check_entry(request(), EQUITY).allowed is True


def test_risk_daily_loss_is_judged_once_equity_is_known() -> None:
    risk = engine()
    risk.on_trade_closed(Decimal("-300"))  # no equity seen yet today
    assert risk.risk_off is False

    # Equity after the loss is 9,700: the day started at 10,000, so the limit is 200.
    decision = risk.check_entry(request(), AccountState(Decimal("9700")))

    assert decision.reason == reasons.RISK_OFF_DAILY_LOSS


def test_risk_blocks_only_the_symbol_with_poor_execution_quality() -> None:
    clock = ManualClock(T0)
    quality = ExecutionQuality(CONFIG.quality, clock)
    risk = engine(clock, quality)
    quality.record_fill("BTCUSDT", OrderSide.BUY, 50000.0, 50250.0)  # 50 bps adverse

    btc = risk.check_entry(request(), EQUITY)
    eth = risk.check_entry(request(symbol="ETHUSDT", price=3000.0, stop=10.0), EQUITY)

    assert (btc.allowed, btc.reason) == (False, reasons.SYMBOL_BLOCKED_EXECUTION_QUALITY)
    assert eth.allowed is True


def test_risk_entry_block_reason_precedence() -> None:
    risk = engine()
    assert risk.entry_block_reason("BTCUSDT") is None

    risk.set_trading_enabled(False)
    assert risk.entry_block_reason("BTCUSDT") == reasons.TRADING_DISABLED

    risk.set_global_block(reasons.RISK_OFF)
    assert risk.entry_block_reason("BTCUSDT") == reasons.RISK_OFF


def test_round_to_step_keeps_step_exponent() -> None:
    assert str(round_to_step(Decimal("0.35714"), Decimal("0.001"))) == "0.357"
    assert str(round_to_step(Decimal("3"), Decimal("0.001"))) == "3.000"
    assert str(round_to_step(Decimal("91234.55"), Decimal("0.10"))) == "91234.50"
    assert str(round_to_step(Decimal("91234.51"), Decimal("0.10"), ROUND_CEILING)) == "91234.60"
    assert str(round_to_step(Decimal("1234567"), Decimal("1"))) == "1234567"
