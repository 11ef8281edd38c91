from __future__ import annotations

import pytest

from failover.domain.enums import OrderSide
from trading.domain import reasons
from trading.domain.orders import OrderRequest
from trading.domain.statemachine import (
    ARM_TIMEOUT,
    COOLDOWN_OVER,
    ENTRY_SIGNAL_LONG,
    ENTRY_SIGNAL_SHORT,
    ORDER_REQUEST_TIMEOUT,
    SIGNAL_FADED,
    SIGNAL_FLIPPED,
    SIGNAL_WEAKENED,
    WATCH_TIMEOUT,
    State,
    StateMachine,
    Transition,
)
from trading.tests.domain.kit import make_config, make_features, make_score

SYM = "BTCUSDT"
CONFIG = make_config(
    scoring={"watch_threshold": 0.35, "entry_threshold": 0.6},
    state_machine={
        "watch_timeout_ms": 1000,
        "arm_timeout_ms": 500,
        "order_request_timeout_ms": 2000,
        "cooldown_ms": 3000,
    },
    risk={"stop_vol_multiple": 1.5, "min_stop_bps": 5},
)
FEATURES = make_features(price=100.0, vol_bps=20.0)  # stop = 1.5 * 20 bps * 100 = 0.3


class Gate:
    """An entry gate the test opens and closes."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.asked: list[str] = []

    def __call__(self, symbol: str) -> str | None:
        self.asked.append(symbol)
        return self.reason


def machine(gate: Gate | None = None) -> tuple[StateMachine, list[Transition]]:
    log: list[Transition] = []
    return StateMachine(CONFIG, gate or Gate(), on_transition=log.append), log


def signal(sm: StateMachine, ts: int, long: float = 0.0, short: float = 0.0, symbol: str = SYM) -> OrderRequest | None:
    return sm.on_signal(symbol, make_score(long, short), FEATURES, ts)


def arm(sm: StateMachine, long: float = 0.7, symbol: str = SYM) -> None:
    signal(sm, 0, long=long, symbol=symbol)
    signal(sm, 100, long=long, symbol=symbol)
    assert sm.state(symbol) is State.ARM


def test_statemachine_walks_idle_watch_arm_and_emits_order_request() -> None:
    sm, log = machine()

    assert signal(sm, 0, long=0.7) is None
    assert sm.state(SYM) is State.WATCH
    assert signal(sm, 100, long=0.7) is None
    assert sm.state(SYM) is State.ARM
    request = signal(sm, 200, long=0.7)

    assert request == OrderRequest(
        symbol=SYM,
        side=OrderSide.BUY,
        reference_price=100.0,
        stop_distance=pytest.approx(0.3),
        reason=ENTRY_SIGNAL_LONG,
        score=0.7,
        ts=200,
    )
    assert sm.state(SYM) is State.ORDER_REQUEST
    assert signal(sm, 300, long=0.9) is None  # one request per episode
    assert [(t.from_state, t.to_state, t.ts) for t in log] == [
        (State.IDLE, State.WATCH, 0),
        (State.WATCH, State.ARM, 100),
        (State.ARM, State.ORDER_REQUEST, 200),
    ]


def test_statemachine_emits_sell_request_on_short_score() -> None:
    sm, _ = machine()
    for ts in (0, 100):
        signal(sm, ts, short=0.8, long=0.1)

    request = signal(sm, 200, short=0.8, long=0.1)

    assert request is not None
    assert (request.side, request.reason, request.score) == (OrderSide.SELL, ENTRY_SIGNAL_SHORT, 0.8)


def test_statemachine_stop_distance_has_a_floor() -> None:
    sm, _ = machine()
    calm = make_features(price=200.0, vol_bps=0.0)
    for ts in (0, 100):
        sm.on_signal(SYM, make_score(0.7), calm, ts)

    request = sm.on_signal(SYM, make_score(0.7), calm, 200)

    assert request is not None
    assert request.stop_distance == pytest.approx(0.1)  # 5 bps of 200


def test_statemachine_fill_then_close_then_cooldown_then_idle() -> None:
    sm, log = machine()
    arm(sm)
    signal(sm, 200, long=0.7)

    sm.on_position_opened(SYM, OrderSide.BUY, 250)
    assert sm.state(SYM) is State.IN_POSITION
    assert signal(sm, 10_000, long=0.9) is None  # no timeout and no new entry while in position
    assert sm.state(SYM) is State.IN_POSITION

    sm.on_position_closed(SYM, 20_000)
    assert sm.state(SYM) is State.COOLDOWN
    sm.tick(22_999)
    assert sm.state(SYM) is State.COOLDOWN
    sm.tick(23_000)
    assert sm.state(SYM) is State.IDLE
    assert log[-1].reason == COOLDOWN_OVER


def test_statemachine_watch_times_out() -> None:
    sm, log = machine()
    signal(sm, 0, long=0.4)

    sm.tick(999)
    assert sm.state(SYM) is State.WATCH
    sm.tick(1000)

    assert sm.state(SYM) is State.IDLE
    assert log[-1].reason == WATCH_TIMEOUT


def test_statemachine_arm_times_out() -> None:
    sm, log = machine()
    arm(sm)

    sm.tick(599)
    assert sm.state(SYM) is State.ARM
    sm.tick(600)

    assert sm.state(SYM) is State.IDLE
    assert log[-1].reason == ARM_TIMEOUT


def test_statemachine_order_request_timeout_cools_down_and_late_fill_still_counts() -> None:
    sm, log = machine()
    arm(sm)
    signal(sm, 200, long=0.7)

    sm.tick(2200)
    assert sm.state(SYM) is State.COOLDOWN
    assert log[-1].reason == ORDER_REQUEST_TIMEOUT

    sm.on_position_opened(SYM, OrderSide.BUY, 2300)
    assert sm.state(SYM) is State.IN_POSITION


def test_statemachine_rejected_order_cools_down() -> None:
    sm, _ = machine()
    arm(sm)
    signal(sm, 200, long=0.7)

    sm.on_order_rejected(SYM, 250, reasons.MAX_HEAT)

    assert sm.state(SYM) is State.COOLDOWN
    assert sm.context(SYM).last_reason == reasons.MAX_HEAT


def test_statemachine_signal_fading_weakening_and_flipping() -> None:
    sm, log = machine()
    signal(sm, 0, long=0.5)
    signal(sm, 10, long=0.2)
    assert (sm.state(SYM), log[-1].reason) == (State.IDLE, SIGNAL_FADED)

    arm(sm)
    signal(sm, 150, long=0.5)
    assert (sm.state(SYM), log[-1].reason) == (State.WATCH, SIGNAL_WEAKENED)

    signal(sm, 160, short=0.5)
    assert (sm.state(SYM), log[-1].reason) == (State.IDLE, SIGNAL_FLIPPED)


def test_statemachine_does_nothing_until_features_are_ready() -> None:
    sm, _ = machine()

    for ts in range(0, 500, 100):
        assert sm.on_signal(SYM, make_score(0.9), make_features(ready=False), ts) is None

    assert sm.state(SYM) is State.IDLE


def test_statemachine_gate_blocks_emission_and_counts_suppression() -> None:
    gate = Gate()
    gate.reason = reasons.SAFE_MODE_ACTIVE
    sm, _ = machine(gate)
    arm(sm)

    emitted = [signal(sm, ts, long=0.7) for ts in (200, 250, 300)]

    assert emitted == [None, None, None]
    assert sm.state(SYM) is State.ARM  # keeps following the signal
    ctx = sm.context(SYM)
    assert ctx.suppressed == 1  # once per ARM episode, not once per event
    assert ctx.last_suppressed_reason == reasons.SAFE_MODE_ACTIVE
    assert sm.suppressed_total == 1
    assert sm.suppressed_by_reason == {reasons.SAFE_MODE_ACTIVE: 1}

    gate.reason = None
    request = signal(sm, 350, long=0.7)

    assert request is not None and request.ts == 350
    assert sm.state(SYM) is State.ORDER_REQUEST


def test_statemachine_reports_each_refusal_once_per_arm_episode_with_its_reason() -> None:
    gate = Gate()
    gate.reason = reasons.SYMBOL_BLOCKED_EXECUTION_QUALITY
    refusals: list[tuple[str, str]] = []
    sm = StateMachine(CONFIG, gate, on_suppressed=lambda symbol, reason: refusals.append((symbol, reason)))
    arm(sm)
    for ts in (200, 250, 300):
        signal(sm, ts, long=0.7)
    assert refusals == [(SYM, reasons.SYMBOL_BLOCKED_EXECUTION_QUALITY)]
    signal(sm, 400, long=0.0)  # the signal fades: the ARM episode ends
    for ts in (500, 600, 700):  # WATCH, ARM, fire into the closed gate
        signal(sm, ts, long=0.7)
    assert refusals == [(SYM, reasons.SYMBOL_BLOCKED_EXECUTION_QUALITY)] * 2


def test_statemachine_gate_is_asked_per_symbol() -> None:
    gate = Gate()
    sm, _ = machine(gate)
    arm(sm, symbol="ETHUSDT")

    signal(sm, 200, long=0.7, symbol="ETHUSDT")

    assert gate.asked == ["ETHUSDT"]


def test_statemachine_clear_idle_state_never_touches_positions() -> None:
    sm, _ = machine()
    signal(sm, 0, long=0.4, symbol="WATCHUSDT")
    arm(sm, symbol="ARMUSDT")
    sm.on_position_opened("COOLUSDT", OrderSide.BUY, 0)
    sm.on_position_closed("COOLUSDT", 50)
    sm.on_position_opened("POSUSDT", OrderSide.SELL, 0)
    arm(sm, symbol="REQUSDT")
    signal(sm, 200, long=0.7, symbol="REQUSDT")
    signal(sm, 0, long=0.4, symbol="KEEPUSDT")

    cleared = sm.clear_idle_state(now_ms=300, keep={"KEEPUSDT"})

    assert sorted(cleared) == ["ARMUSDT", "COOLUSDT", "WATCHUSDT"]
    assert {s: c.state for s, c in sm.contexts().items()} == {
        "WATCHUSDT": State.IDLE,
        "ARMUSDT": State.IDLE,
        "COOLUSDT": State.IDLE,
        "POSUSDT": State.IN_POSITION,
        "REQUSDT": State.ORDER_REQUEST,
        "KEEPUSDT": State.WATCH,
    }
    assert sm.reset_symbol("POSUSDT") is False
    assert sm.context("POSUSDT").side is OrderSide.SELL


def test_statemachine_state_names_are_the_spec_names() -> None:
    assert [s.value for s in State] == ["IDLE", "WATCH", "ARM", "ORDER_REQUEST", "IN_POSITION", "COOLDOWN"]
