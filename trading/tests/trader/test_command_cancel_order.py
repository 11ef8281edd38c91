"""The ``cancel_order`` command: one resting order is canceled on the exchange and locally, nothing else."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from trading.engine.localstate import LocalOrder
from trading.exchange.port import BUY, PlaceOrder
from trading.tests.kit import build_rig
from trading.tests.test_alerts_events import SYMBOLS, Alerting, Parts

pytestmark = pytest.mark.django_db


def _rest(rig, link_id: str, symbol: str = "BTCUSDT") -> None:
    """A limit buy 10 % under the market: known locally first, then resting on the exchange."""
    price = Decimal(str(rig.mid(symbol) * 0.9)).quantize(Decimal("0.1"))
    rig.core.state.put_order(LocalOrder(order_link_id=link_id, symbol=symbol, side="BUY", qty=Decimal("0.01"),
                                        order_type="Limit", price=price, purpose="ENTRY"))
    rig.venue.place_order(PlaceOrder(symbol=symbol, side=BUY, qty=Decimal("0.01"), order_link_id=link_id,
                                     order_type="Limit", price=price))
    rig.pump()


@pytest.fixture
def parts(tmp_path: Path):
    rig = build_rig(SYMBOLS, tmp_path / "events")
    alerting = Alerting(rig.clock.now_ms)
    yield rig, Parts(tmp_path, rig, alerting, run_id="r-cancel")
    alerting.engine.close(5)


def _ack(trader: Parts, command_id: str) -> dict:
    return dict(trader.ctx.control.acks)[command_id]


def test_cancel_order_cancels_the_named_order_on_the_exchange_and_leaves_the_others(parts):
    rig, trader = parts
    _rest(rig, "AISCLP-rest-1")
    _rest(rig, "AISCLP-rest-2", "ETHUSDT")
    assert {o.order_link_id for o in rig.core.state.open_orders()} == {"AISCLP-rest-1", "AISCLP-rest-2"}

    trader.commands.run({"command": "cancel_order", "commandId": "c1", "args": {"order_link_id": "AISCLP-rest-1"}})
    rig.pump()

    ack = _ack(trader, "c1")
    assert ack["ok"] is True, ack
    assert ack["result"] == {"orderLinkId": "AISCLP-rest-1", "symbol": "BTCUSDT", "canceled": True,
                             "status": "CANCELED"}
    assert [o.link_id for o in rig.venue.engine.open_orders(None)] == ["AISCLP-rest-2"]
    assert [o.order_link_id for o in rig.core.state.open_orders()] == ["AISCLP-rest-2"]


@pytest.mark.parametrize("link_id", ["AISCLP-rest-1", "AISCLP-never-seen", ""])
def test_cancel_order_refuses_an_order_that_is_not_open_and_sends_nothing(parts, link_id):
    rig, trader = parts
    _rest(rig, "AISCLP-rest-1")
    rig.venue.cancel_order("BTCUSDT", order_link_id="AISCLP-rest-1")  # canceled behind the trader's back...
    rig.pump()  # ...and the stream told it
    _rest(rig, "AISCLP-rest-2")

    trader.commands.run({"command": "cancel_order", "commandId": "c1", "args": {"order_link_id": link_id}})

    ack = _ack(trader, "c1")
    assert ack["ok"] is False and "is not an open order of this trader" in ack["error"]
    assert [o.link_id for o in rig.venue.engine.open_orders(None)] == ["AISCLP-rest-2"]
