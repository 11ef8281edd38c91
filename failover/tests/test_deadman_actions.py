"""The guardian's actions on the simulator's account, through the REST port the recovery steps use."""

from __future__ import annotations

from decimal import Decimal

import pytest

from failover.recovery import deadman
from failover.recovery.kit import shared_rest
from failover.tests.conftest import Env
from trading.exchange.port import BUY, SELL, ExchangePort, PlaceOrder, TemporaryExchangeError

pytestmark = pytest.mark.django_db  # the environment is registered with the FailoverManager


class Flaky:
    """The real port, with the next ``failures`` reads of each kind failing as a network error would."""

    def __init__(self, inner: ExchangePort, failures: int) -> None:
        self.inner = inner
        self.failures = {"open_orders": failures, "positions": failures}

    def _maybe_fail(self, name: str) -> None:
        if self.failures[name] > 0:
            self.failures[name] -= 1
            raise TemporaryExchangeError(f"{name}: connection reset")

    def open_orders(self, symbol=None):
        self._maybe_fail("open_orders")
        return self.inner.open_orders(symbol)

    def positions(self, symbol=None):
        self._maybe_fail("positions")
        return self.inner.positions(symbol)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _book(env: Env) -> ExchangePort:
    rest = shared_rest(env.context()["exchange"])
    rest.place_order(PlaceOrder(symbol="ETHUSDT", side=SELL, qty=Decimal("0.5"), order_link_id="short"))
    rest.place_order(PlaceOrder(symbol="BTCUSDT", side=BUY, qty=Decimal("0.01"), order_link_id="bid",
                                order_type="Limit", price=Decimal("45000"), time_in_force="GTC"))
    rest.place_order(PlaceOrder(symbol="ETHUSDT", side=BUY, qty=Decimal("0.5"), order_link_id="stop-cover",
                                order_type="Limit", price=Decimal("2000"), time_in_force="GTC", reduce_only=True))
    return rest


def test_flatten_retries_through_failed_reads_and_closes_a_short(env: Env):
    rest = _book(env)
    pauses: list[float] = []
    outcome = deadman.protect(Flaky(rest, failures=2), action="flatten", episode="42", sleep=pauses.append)
    assert outcome["done"] is True and outcome["cancel"]["cancelled"] == ["bid"]
    assert outcome["cancel"]["keptReduceOnly"] == ["stop-cover"]
    assert len(outcome["cancel"]["errors"]) == 2 and len(outcome["flatten"]["errors"]) == 2
    assert outcome["flatten"]["closed"] == ["DMN-42-2-ETHUSDT"]
    assert pauses[:2] == [0.25, 0.5]  # backoff between failed passes
    assert rest.positions() == []


def test_reads_that_never_answer_end_after_bounded_attempts_not_done(env: Env):
    rest = _book(env)
    pauses: list[float] = []
    outcome = deadman.protect(Flaky(rest, failures=100), action="cancel_entries", episode="1", sleep=pauses.append)
    assert outcome["done"] is False and len(outcome["cancel"]["errors"]) == deadman.ATTEMPTS + 1
    assert pauses == [0.25, 0.5, 1.0, 2.0, 2.0]
    assert {o.order_link_id for o in rest.open_orders()} == {"bid", "stop-cover"}
