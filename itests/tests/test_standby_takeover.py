"""STANDBY_TAKEOVER: the readings its verdict rests on (fast), and the scenario against real processes (services).

The fast tests hold the journal readings to the product's own id format: an
``orderLinkId`` names the process that made it, so an order of a frozen
leader's making cannot hide among its successor's.
"""

from __future__ import annotations

import os

import pytest

from failover.domain.clock import SystemClock
from itests.scenarios.scenario_standby_takeover import _moved, duplicated_links, link_tag, orders_made_by
from itests.tests.test_scenarios import _run
from trading.domain.ids import OrderLinkIdFactory, default_instance


def _order(link: str, *, order_id: str = "1", ts: int = 1000, reduce_only: bool = False,
           origin: str = "api") -> dict:
    return {"type": "order", "orderLinkId": link, "orderId": order_id, "ts": ts, "reduceOnly": reduce_only,
            "orderOrigin": origin, "status": "New"}


def test_link_tag_names_the_process_whose_factory_made_the_id():
    factory = OrderLinkIdFactory(SystemClock())  # the instance the trader's factory takes by default
    link = factory.next_id()
    assert link.split("-")[2] == factory.instance and len(factory.instance) == len(default_instance())
    assert link.split("-")[2][-5:] == link_tag(os.getpid()) != link_tag(os.getpid() + 1)


def test_orders_made_by_keeps_one_process_api_orders_since_a_moment_once_each():
    mine, theirs = f"AISCLP-20261202-abcdefgh{link_tag(4242)}", f"AISCLP-20261202-abcdefgh{link_tag(4243)}"
    records = [
        _order(f"{mine}-1", ts=500),                      # before the moment
        _order(f"{mine}-2", ts=1500),
        {**_order(f"{mine}-2", ts=1600), "status": "Filled"},  # the same order again
        _order(f"{mine}-3", ts=1700, reduce_only=True),   # an exit
        _order(f"{theirs}-1", ts=1800),                   # another process
        _order(f"{mine}-4", ts=1900, origin="sim"),       # behind the back, whatever its id
        {"type": "execution", "orderLinkId": f"{mine}-5", "ts": 2000},
    ]
    assert orders_made_by(records, 4242, since_ms=1000) == [f"{mine}-2", f"{mine}-3"]
    assert orders_made_by(records, 4242, since_ms=1000, entries_only=True) == [f"{mine}-2"]
    assert orders_made_by(records, 4243) == [f"{theirs}-1"]


def test_duplicated_links_finds_an_order_link_id_on_two_exchange_orders_only():
    records = [_order("A-1", order_id="1"), {**_order("A-1", order_id="1"), "status": "Filled"},
               _order("A-2", order_id="2"), _order("A-2", order_id="3"), _order("", order_id="4"),
               _order("", order_id="5")]
    assert duplicated_links(records) == ["A-2"]


def test_moved_points_a_service_url_at_the_gateway_keeping_credentials_and_database():
    assert _moved("redis://:pw@127.0.0.1:6379/7", "10.213.9.1", 41000) == "redis://:pw@10.213.9.1:41000/7"
    assert _moved("postgres://postgres@127.0.0.1:5432/db", "10.213.9.1", 41001) == \
        "postgres://postgres@10.213.9.1:41001/db"


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_standby_takes_over_a_killed_leader_a_frozen_leader_steps_down_and_the_guardian_cancels_entries():
    metrics = _run("STANDBY_TAKEOVER")["result"]["metrics"]
    assert metrics["hosts"]["mode"] in ("netns", "loopback") and metrics["hosts"]["why"]
    assert len(metrics["takeoverMs"]) == 2  # the kill, then the freeze
    assert metrics["frozenLeader"]["postsAfterStop"] == 0
    assert metrics["guardian"]["lapseToCancelMs"] >= 0


@pytest.mark.services
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_standby_takeover_on_loopback_three_kills_in_a_row_each_leave_one_leader_and_the_exchange_in_sync():
    metrics = _run("STANDBY_TAKEOVER", kills=3, hosts="loopback")["result"]["metrics"]
    assert metrics["hosts"] == {"mode": "loopback", "why": "loopback asked for", "gateway": "127.0.0.1",
                                "addresses": {"a": "127.0.0.1", "b": "127.0.0.1"}}
    assert len(metrics["takeoverMs"]) == 4 and metrics["frozenLeader"]["postsAfterStop"] == 0
